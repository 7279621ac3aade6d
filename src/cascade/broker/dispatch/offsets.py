"""Which offset a Trigger may commit: the end of the gap-free run of finished records.

Records of a partition are started in offset order but may finish in any order (unordered
delivery). Like the Kafka dispatcher's OffsetManager (§6.5), the committable offset is the
first offset not finished yet, so a crash redelivers unfinished records and never skips one.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PartitionOffsets"]


class PartitionOffsets:
    """Tracks one partition of one Trigger. Not thread-safe: owned by the dispatcher's loop."""

    def __init__(self, start: int) -> None:
        if start < 0:
            raise ValueError(f"start offset must be >= 0, got {start}")
        self._next = start  # next offset to start (read position)
        self._started: deque[int] = deque()  # started offsets, in order, not yet committable
        self._open: set[int] = set()  # started and not finished
        self._committed = start

    @property
    def next_offset(self) -> int:
        """The offset of the next record to read and start."""
        return self._next

    @property
    def committable(self) -> int:
        """First offset not finished: everything below it is done."""
        return self._started[0] if self._started else self._next

    @property
    def committed(self) -> int:
        """The offset last reported to :meth:`mark_committed`."""
        return self._committed

    @property
    def in_flight(self) -> int:
        """Started records not finished yet."""
        return len(self._open)

    def start(self, offset: int) -> None:
        """A record was handed to delivery. Offsets must increase; absent offsets are fine."""
        if offset < self._next:
            raise ValueError(f"offset {offset} started twice or out of order (next {self._next})")
        self._started.append(offset)
        self._open.add(offset)
        self._next = offset + 1

    def finish(self, offset: int) -> None:
        """A started record is done (delivered, dead-lettered, dropped or filtered out)."""
        if offset not in self._open:
            raise ValueError(f"offset {offset} was not in flight")
        self._open.remove(offset)
        while self._started and self._started[0] not in self._open:
            self._started.popleft()

    def skip_to(self, offset: int) -> None:
        """Nothing to deliver below ``offset`` (e.g. the log had no records there)."""
        if self._open:
            raise ValueError("cannot skip while records are in flight")
        self._next = max(self._next, offset)

    def needs_commit(self) -> bool:
        return self.committable != self._committed

    def mark_committed(self, offset: int) -> None:
        self._committed = offset

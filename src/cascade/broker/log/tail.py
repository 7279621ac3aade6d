"""The newest records of one log, kept in memory for the dispatchers that follow its tail.

A Trigger that keeps up reads what was just stored; serving that from here saves a log read
(a thread hop and, for sqlite, a query) per record. Anything not here (older records after a
restart, records written by another process) is read from the log as usual. Only the
broker's event loop touches it.
"""

from __future__ import annotations

from collections.abc import Sequence

from cascade.broker.event import Record
from cascade.broker.http.event import event_size

__all__ = ["TailCache"]


# What a cached record costs in memory besides its attribute and data bytes (``event_size``):
# the Record, its StoredEvent, the attribute dict and its strings, the headers. Measured with
# tracemalloc for a typical small binary event: ~880 bytes held for 233 counted.
RECORD_OVERHEAD_BYTES = 650


class TailCache:
    """At most ``max_bytes`` of records (estimated memory) per log; the oldest half goes first.

    A Trigger that keeps up needs only what was stored since its last read; one that lags
    further reads the log. So the bound is small: every cached record is also one more object
    for the garbage collector to walk, and the broker's memory grows with it."""

    def __init__(self, partitions: int, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._records: list[list[Record]] = [[] for _ in range(partitions)]
        self._sizes: list[int] = [0] * partitions
        self._limit = max(1, max_bytes // partitions)

    def add(self, records: Sequence[Record]) -> None:
        """Records just stored, in the order the log stored them."""
        for record in records:
            cached = self._records[record.partition]
            if cached and cached[-1].offset + 1 != record.offset:
                # Someone else wrote in between: start over from this record.
                cached.clear()
                self._sizes[record.partition] = 0
            cached.append(record)
            self._sizes[record.partition] += _memory(record)
            if self._sizes[record.partition] > self._limit:
                self._trim(record.partition)

    def read(self, partition: int, offset: int, max_records: int) -> list[Record] | None:
        """Records from ``offset`` on, or None when the cache does not hold ``offset``."""
        cached = self._records[partition]
        if not cached:
            return None
        index = offset - cached[0].offset
        if index < 0 or index >= len(cached):
            return None
        return cached[index : index + max_records]

    def caught_up(self, partition: int, offset: int) -> bool:
        """True when ``offset`` is just past the newest record held: nothing newer was stored
        by this process, so a reader there need not ask the log until it is notified."""
        cached = self._records[partition]
        return bool(cached) and cached[-1].offset + 1 == offset

    def _trim(self, partition: int) -> None:
        cached = self._records[partition]
        keep = cached[len(cached) // 2 :]
        self._records[partition] = keep
        self._sizes[partition] = sum(_memory(record) for record in keep)


def _memory(record: Record) -> int:
    return event_size(record.event) + RECORD_OVERHEAD_BYTES

"""An in-process broker log for tests: nothing survives the process."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from cascade.broker.event import Record, StoredEvent
from cascade.broker.log._common import (
    PartitionChooser,
    check_event,
    check_group,
    check_headers,
    check_max_records,
    check_offset,
    check_partition,
    check_partition_count,
    closed_error,
)
from cascade.broker.log.base import BrokerLog


class MemoryLog(BrokerLog):
    """Partitions as lists, commits as a dict, one lock around both."""

    def __init__(self, partitions: int) -> None:
        self.partitions = check_partition_count(partitions)
        self._chooser = PartitionChooser(partitions)
        self._records: list[list[Record]] = [[] for _ in range(partitions)]
        self._commits: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def append_many(
        self, items: Sequence[tuple[StoredEvent, Mapping[str, str] | None]]
    ) -> list[tuple[int, int]]:
        prepared = []
        for event, headers in items:
            check_event(event)
            # Copies, so a caller mutating its dicts later cannot rewrite history.
            stored = StoredEvent(dict(event.attributes), event.data)
            prepared.append((stored, check_headers(headers)))
        positions = []
        with self._lock:
            if self._closed:
                raise closed_error()
            for stored, trace_headers in prepared:
                partition = self._chooser.choose(stored)
                records = self._records[partition]
                offset = len(records)
                records.append(Record(partition, offset, stored, trace_headers))
                positions.append((partition, offset))
        return positions

    def read(self, partition: int, offset: int, max_records: int) -> Sequence[Record]:
        check_partition(partition, self.partitions)
        check_offset(offset)
        check_max_records(max_records)
        with self._lock:
            if self._closed:
                raise closed_error()
            return self._records[partition][offset : offset + max_records]

    def end_offset(self, partition: int) -> int:
        check_partition(partition, self.partitions)
        with self._lock:
            if self._closed:
                raise closed_error()
            return len(self._records[partition])

    def committed(self, group: str, partition: int) -> int | None:
        check_group(group)
        check_partition(partition, self.partitions)
        with self._lock:
            if self._closed:
                raise closed_error()
            return self._commits.get((group, partition))

    def commit(self, group: str, offsets: Mapping[int, int]) -> None:
        check_group(group)
        for partition, offset in offsets.items():
            check_partition(partition, self.partitions)
            check_offset(offset, "committed offset")
        with self._lock:
            if self._closed:
                raise closed_error()
            for partition, offset in offsets.items():
                self._commits[(group, partition)] = offset

    def close(self) -> None:
        with self._lock:
            self._closed = True

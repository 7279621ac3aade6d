"""Checks and partition choice shared by every log backend, so they all behave alike."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from cascade.broker.event import StoredEvent
from cascade.broker.log.base import LogError
from cascade.broker.log.partitioner import partition_for_key

# Names a trace header may not take: in Kafka binary mode they carry the CloudEvent itself.
_RESERVED_HEADER_PREFIXES = ("ce_", "ce-")
_RESERVED_HEADERS = frozenset({"content-type"})


def check_partition_count(partitions: int) -> int:
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ValueError(f"partitions must be an integer >= 1, got {partitions!r}")
    return partitions


def check_partition(partition: int, partitions: int) -> None:
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} out of range: the log has {partitions}")


def check_offset(offset: int, what: str = "offset") -> None:
    if offset < 0:
        raise ValueError(f"{what} must be >= 0, got {offset}")


def check_group(group: str) -> None:
    if not isinstance(group, str) or not group:
        raise ValueError(f"consumer group must be a non-empty string, got {group!r}")


def check_max_records(max_records: int) -> None:
    if max_records < 0:
        raise ValueError(f"max_records must be >= 0, got {max_records}")


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Copy the trace headers, refusing names that would collide with the CloudEvent."""
    if not headers:
        return {}
    for name, value in headers.items():
        lowered = name.lower()
        if (
            not name
            or lowered in _RESERVED_HEADERS
            or lowered.startswith(_RESERVED_HEADER_PREFIXES)
        ):
            raise ValueError(
                f"record header {name!r} is reserved for the CloudEvent (ce_*, content-type)"
            )
        if not isinstance(value, str):
            raise ValueError(f"record header {name!r} must be a string, got {type(value)!r}")
    return dict(headers)


def check_event(event: StoredEvent) -> None:
    """Attributes are strings in wire form and data is bytes: anything else cannot roundtrip."""
    for name, value in event.attributes.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"event attribute names must be non-empty strings, got {name!r}")
        if not isinstance(value, str):
            raise ValueError(
                f"event attribute {name!r} must be a string in wire form, got {type(value)!r}"
            )
    if not isinstance(event.data, bytes):
        raise ValueError(f"event data must be bytes, got {type(event.data)!r}")


def closed_error() -> LogError:
    return LogError("the broker log is closed")


class PartitionChooser:
    """Keyed events go where Kafka's default partitioner puts them; keyless ones round-robin."""

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._next_keyless = 0
        self._lock = threading.Lock()

    def choose(self, event: StoredEvent) -> int:
        key = event.partition_key
        if key is not None:
            return partition_for_key(key, self._partitions)
        with self._lock:
            partition = self._next_keyless
            self._next_keyless = (partition + 1) % self._partitions
        return partition

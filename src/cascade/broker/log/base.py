"""The interface every broker log backend implements (memory, sqlite, kafka)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from cascade.broker.event import Record, StoredEvent


class LogError(Exception):
    """The log could not store or read; ingress answers 503 on a failed append."""


class BrokerLog(ABC):
    """An append-only log of one Broker, split into ``partitions`` partitions.

    Offsets are per partition and start at 0. Consumer groups (one per Trigger) keep a
    committed offset per partition: the offset of the next record to process.
    All methods are blocking and thread-safe; async callers use a thread.

    Errors, the same in every backend: a bad argument (partition out of range, negative
    offset or max_records, empty group name, non-string attribute, trace header named
    ``ce_*``/``ce-*``/``content-type``, which would clash with the CloudEvent in Kafka binary
    mode) raises ``ValueError`` and stores nothing. A storage failure, or any call after
    ``close()``, raises ``LogError``. ``close()`` itself may be called twice.
    """

    partitions: int

    def append(
        self, event: StoredEvent, headers: Mapping[str, str] | None = None
    ) -> tuple[int, int]:
        """Store one event durably and return ``(partition, offset)``.

        A keyed event (``partitionkey``) goes to ``partition_for_key(key, partitions)``;
        keyless events spread evenly (round-robin per log instance). Returns only once the
        record is durable.
        """
        return self.append_many([(event, headers)])[0]

    @abstractmethod
    def append_many(
        self, items: Sequence[tuple[StoredEvent, Mapping[str, str] | None]]
    ) -> list[tuple[int, int]]:
        """Store several events durably (one group commit where the backend can).

        Positions come back in the order of ``items``; events of one partition keep that order.
        Every backend implements this one; ``append`` is a batch of one.
        """

    @abstractmethod
    def read(self, partition: int, offset: int, max_records: int) -> Sequence[Record]:
        """Records of ``partition`` starting at ``offset``, at most ``max_records``.

        Empty at or beyond the end. Each record carries its own offset (on Kafka, records
        removed by retention are skipped, so the first may be past ``offset``).
        """

    @abstractmethod
    def end_offset(self, partition: int) -> int:
        """The offset the next appended record of ``partition`` will get."""

    def end_offsets(self) -> list[int]:
        """``end_offset`` of every partition, in partition order (backends with a network
        round trip per question override it to bound the whole, not each, by their timeout)."""
        return [self.end_offset(partition) for partition in range(self.partitions)]

    @abstractmethod
    def committed(self, group: str, partition: int) -> int | None:
        """The committed offset of ``group`` on ``partition``; None if never committed."""

    @abstractmethod
    def commit(self, group: str, offsets: Mapping[int, int]) -> None:
        """Durably set ``group``'s committed offset for each partition given."""

    @abstractmethod
    def close(self) -> None:
        """Release resources; further calls are errors."""

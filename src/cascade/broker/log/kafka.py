"""A broker log on a real Kafka topic (confluent-kafka), laid out as Knative's Kafka broker does.

One topic per Broker (``knative-broker-<ns>-<broker>``), created if missing. Each event is one
record in CloudEvents Kafka *binary* mode: ``ce_<attribute>`` headers, ``content-type`` for
``datacontenttype``, the data as the value, and ``partitionkey`` as the record key. The trace
headers ride along as plain record headers. We pick the partition ourselves with Kafka's murmur2
formula, so partition numbers equal those of the other backends and of a real Knative broker.

Consumer-group offsets (one group per Trigger, named by the caller) are read and written with the
group offset API (OffsetFetch / OffsetCommit through the admin client); nobody joins the groups.

Quirks of Tansu 0.6 (the test broker), worked around here:
- its high watermark moves by one per produced *batch*, not per record, so the producer sends
  one record per batch (``batch.num.messages=1``); a real Kafka broker is unaffected;
- a metadata request for an unknown topic creates it with a default partition count, so the
  topic is always created explicitly before any client names it.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

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
from cascade.broker.log.base import BrokerLog, LogError

_logger = logging.getLogger(__name__)

_ATTRIBUTE_PREFIX = "ce_"
_CONTENT_TYPE = "content-type"
_NO_OFFSET = -1001  # librdkafka's OFFSET_INVALID: the group never committed this partition

ClientConfig = Mapping[str, str | int | float | bool]


def topic_name(namespace: str, broker: str) -> str:
    """Knative's default ``brokers-topic-template``: ``knative-broker-<ns>-<broker>``."""
    return f"knative-broker-{namespace}-{broker}"


@dataclass
class _Delivery:
    """Delivery reports of one append call, filled in by the producer's poll thread."""

    expected: int
    # (partition, offset), or why the record was not stored.
    results: dict[int, tuple[int, int] | str] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self, index: int, error: KafkaError | None, message: Message) -> None:
        # Runs on the poll thread: it must not raise.
        partition, offset = message.partition(), message.offset()
        with self.lock:
            if error is not None:
                self.results[index] = error.str()
            elif partition is None or offset is None or offset < 0:
                self.results[index] = "delivery report without partition or offset"
            else:
                self.results[index] = (partition, offset)
            if len(self.results) == self.expected:
                self.done.set()


def _required(value: int | None) -> int:
    if value is None:
        raise LogError("kafka delivery report without partition or offset")
    return value


class KafkaLog(BrokerLog):
    """The log of one Broker on topic ``topic`` of the Kafka cluster ``bootstrap_servers``.

    ``group_prefix`` is put before every group name the caller passes (empty: the group ids are
    exactly Knative's ``knative-trigger-<ns>-<name>``). ``timeout`` bounds every call.
    ``replication_factor=-1`` takes the cluster's default. ``client_config`` adds librdkafka
    settings (security, for instance) to every client. A topic that already exists with another
    partition count is a ``LogError``.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        partitions: int,
        group_prefix: str = "",
        *,
        replication_factor: int = -1,
        timeout: float = 30.0,
        client_config: ClientConfig | None = None,
    ) -> None:
        self.partitions = check_partition_count(partitions)
        if not bootstrap_servers:
            raise ValueError("bootstrap_servers must name at least one host:port")
        if not topic:
            raise ValueError("topic must be a non-empty name")
        self.topic = topic
        self.group_prefix = group_prefix
        self._timeout = timeout
        self._common: dict[str, str | int | float | bool] = {
            **(client_config or {}),
            "bootstrap.servers": bootstrap_servers,
        }
        self._chooser = PartitionChooser(partitions)
        self._state_lock = threading.Lock()
        self._closed = False
        self._idle_readers: queue.SimpleQueue[Consumer] = queue.SimpleQueue()
        self._admin = AdminClient(dict(self._common))
        try:
            self._ensure_topic(replication_factor)
            self._producer = Producer(
                {
                    **self._common,
                    "acks": "all",
                    "linger.ms": 0,
                    "enable.idempotence": False,
                    "batch.num.messages": 1,  # see the Tansu quirk in the module docstring
                    "message.timeout.ms": int(timeout * 1000),
                }
            )
        except BaseException:
            self._close_admin()
            raise
        self._stop_polling = threading.Event()
        self._poller = threading.Thread(
            target=self._serve_delivery_reports, name=f"kafka-log-{topic}", daemon=True
        )
        self._poller.start()

    # -- topic ------------------------------------------------------------------------------

    def _ensure_topic(self, replication_factor: int) -> None:
        new_topic = NewTopic(
            self.topic, num_partitions=self.partitions, replication_factor=replication_factor
        )
        futures = self._admin.create_topics([new_topic], request_timeout=self._timeout)
        try:
            futures[self.topic].result(timeout=self._timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if not (
                isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
            ):
                raise LogError(f"cannot create kafka topic {self.topic}: {exc}") from exc
        except Exception as exc:  # a timeout from the future, for one
            raise LogError(f"cannot create kafka topic {self.topic}: {exc!r}") from exc
        existing = self._partition_count()
        if existing != self.partitions:
            raise LogError(
                f"kafka topic {self.topic} has {existing} partitions, asked for"
                f" {self.partitions}: changing the count would move keyed events to other"
                " partitions"
            )

    def _partition_count(self) -> int:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                metadata = self._admin.list_topics(self.topic, timeout=self._timeout)
            except KafkaException as exc:
                raise LogError(f"cannot describe kafka topic {self.topic}: {exc}") from exc
            described = metadata.topics.get(self.topic)
            if described is not None and described.error is None and described.partitions:
                return len(described.partitions)
            # Freshly created topics can take a moment to show up in metadata.
            if time.monotonic() > deadline:
                raise LogError(f"kafka topic {self.topic} did not appear in the cluster metadata")
            time.sleep(0.05)

    # -- writing ----------------------------------------------------------------------------

    def append_many(
        self, items: Sequence[tuple[StoredEvent, Mapping[str, str] | None]]
    ) -> list[tuple[int, int]]:
        encoded = [self._encode(event, headers) for event, headers in items]
        self._check_open()
        if not encoded:
            return []
        delivery = _Delivery(expected=len(encoded))
        deadline = time.monotonic() + self._timeout
        for index, (event, record_headers) in enumerate(encoded):
            key = event.partition_key
            self._produce(
                partition=self._chooser.choose(event),
                key=key.encode("utf-8") if key is not None else None,
                value=event.data,
                headers=record_headers,
                on_delivery=functools.partial(delivery.report, index),
                deadline=deadline,
            )
        # The producer gives up after message.timeout.ms (= timeout); allow it that and a margin.
        if not delivery.done.wait(timeout=max(deadline - time.monotonic(), 0) + 5):
            raise LogError(f"kafka topic {self.topic}: no delivery report in time")
        positions: list[tuple[int, int]] = []
        for index in range(len(encoded)):
            result = delivery.results[index]
            if isinstance(result, str):
                raise LogError(f"kafka topic {self.topic}: delivery failed: {result}")
            positions.append(result)
        return positions

    def _produce(
        self,
        *,
        partition: int,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]],
        on_delivery: Callable[[KafkaError | None, Message], None],
        deadline: float,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    value=value,
                    key=key,
                    partition=partition,
                    headers=headers,
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                # The local queue is full: wait for the poll thread to drain some.
                if time.monotonic() > deadline:
                    raise LogError(f"kafka topic {self.topic}: producer queue full") from None
                time.sleep(0.01)
            except (KafkaException, RuntimeError) as exc:  # RuntimeError: closed meanwhile
                raise LogError(f"kafka topic {self.topic}: produce failed: {exc}") from exc

    @staticmethod
    def _encode(
        event: StoredEvent, headers: Mapping[str, str] | None
    ) -> tuple[StoredEvent, list[tuple[str, str | bytes | None]]]:
        check_event(event)
        trace_headers = check_headers(headers)
        try:
            record_headers: list[tuple[str, str | bytes | None]] = [
                (
                    _CONTENT_TYPE if name == "datacontenttype" else _ATTRIBUTE_PREFIX + name,
                    value.encode("utf-8"),
                )
                for name, value in event.attributes.items()
            ]
            record_headers += [
                (name, value.encode("utf-8")) for name, value in trace_headers.items()
            ]
        except UnicodeEncodeError as exc:
            raise ValueError(f"event attributes or headers are not valid text: {exc}") from exc
        return event, record_headers

    def _serve_delivery_reports(self) -> None:
        while not self._stop_polling.is_set():
            try:
                self._producer.poll(0.1)
            except Exception:  # keep serving reports: a dead poller would stall every append
                _logger.exception("kafka topic %s: serving delivery reports failed", self.topic)

    # -- consumer groups --------------------------------------------------------------------

    def committed(self, group: str, partition: int) -> int | None:
        check_group(group)
        check_partition(partition, self.partitions)
        self._check_open()
        request = ConsumerGroupTopicPartitions(
            self.group_prefix + group, [TopicPartition(self.topic, partition)]
        )
        [answer] = self._group_call(
            "reading the committed offset",
            lambda: self._admin.list_consumer_group_offsets(
                [request], request_timeout=self._timeout
            ),
        )
        return None if answer.offset < 0 else answer.offset

    def commit(self, group: str, offsets: Mapping[int, int]) -> None:
        check_group(group)
        for partition, offset in offsets.items():
            check_partition(partition, self.partitions)
            check_offset(offset, "committed offset")
        self._check_open()
        if not offsets:
            return
        request = ConsumerGroupTopicPartitions(
            self.group_prefix + group,
            [TopicPartition(self.topic, p, offset) for p, offset in offsets.items()],
        )
        self._group_call(
            "committing offsets",
            lambda: self._admin.alter_consumer_group_offsets(
                [request], request_timeout=self._timeout
            ),
        )

    def _group_call(
        self, what: str, call: Callable[[], Mapping[str, Future[Any]]]
    ) -> list[TopicPartition]:
        try:
            futures = call()
            [future] = futures.values()
            answer = future.result(timeout=self._timeout)
        except KafkaException as exc:
            raise LogError(f"kafka topic {self.topic}: {what} failed: {exc}") from exc
        except Exception as exc:  # a timeout from the future, for one
            raise LogError(f"kafka topic {self.topic}: {what} failed: {exc!r}") from exc
        partitions: list[TopicPartition] = answer.topic_partitions
        for tp in partitions:
            if tp.error is not None:
                raise LogError(f"kafka topic {self.topic}: {what} failed: {tp.error}")
        return partitions

    # -- reading ----------------------------------------------------------------------------

    def end_offset(self, partition: int) -> int:
        check_partition(partition, self.partitions)
        with self._reader() as consumer:
            return self._watermarks(consumer, partition)[1]

    def end_offsets(self) -> list[int]:
        # One deadline for all partitions: an unreachable cluster costs one timeout, not one
        # per partition.
        deadline = time.monotonic() + self._timeout
        with self._reader() as consumer:
            return [
                self._watermarks(consumer, partition, deadline)[1]
                for partition in range(self.partitions)
            ]

    def read(self, partition: int, offset: int, max_records: int) -> Sequence[Record]:
        check_partition(partition, self.partitions)
        check_offset(offset)
        check_max_records(max_records)
        with self._reader() as consumer:
            low, high = self._watermarks(consumer, partition)
            start = max(offset, low)  # below low: removed by retention, like auto.offset.reset
            if max_records == 0 or start >= high:
                return []
            wanted = min(max_records, high - start)
            consumer.assign([TopicPartition(self.topic, partition, start)])
            try:
                return self._consume(consumer, partition, start, high, wanted)
            finally:
                consumer.unassign()

    def _consume(
        self, consumer: Consumer, partition: int, start: int, high: int, wanted: int
    ) -> list[Record]:
        records: list[Record] = []
        deadline = time.monotonic() + self._timeout
        while len(records) < wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if records:
                    return records  # a gap (compaction, control records): give what we have
                raise LogError(
                    f"kafka topic {self.topic}: reading partition {partition} at {start} timed out"
                )
            try:
                messages = consumer.consume(wanted - len(records), timeout=min(remaining, 1.0))
            except KafkaException as exc:
                raise LogError(f"kafka topic {self.topic}: read failed: {exc}") from exc
            for message in messages:
                error = message.error()
                if error is not None:
                    raise LogError(f"kafka topic {self.topic}: read failed: {error.str()}")
                offset = _required(message.offset())
                # Drop anything before the requested start or out of order (stale fetches).
                if offset < start or (records and offset <= records[-1].offset):
                    continue
                records.append(_decode(partition, offset, message))
            if records and records[-1].offset >= high - 1:
                break
        return records[:wanted]

    def _watermarks(
        self, consumer: Consumer, partition: int, deadline: float | None = None
    ) -> tuple[int, int]:
        timeout = self._timeout if deadline is None else deadline - time.monotonic()
        if timeout <= 0:
            raise LogError(f"kafka topic {self.topic}: no end offsets within {self._timeout:g} s")
        try:
            return consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=timeout, cached=False
            )
        except KafkaException as exc:
            raise LogError(f"kafka topic {self.topic}: cannot read the end offsets: {exc}") from exc

    @contextmanager
    def _reader(self) -> Iterator[Consumer]:
        """A reader from the pool: librdkafka consumers are not safe for concurrent use."""
        self._check_open()
        try:
            consumer = self._idle_readers.get_nowait()
        except queue.Empty:
            consumer = Consumer(
                {
                    **self._common,
                    # Required by the client, never joined or committed to.
                    "group.id": f"{self.group_prefix}cascade-reader-{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    # Short broker-side waits, so a re-assignment is not stuck behind a
                    # long-poll fetch of the previous read.
                    "fetch.wait.max.ms": 10,
                }
            )
        try:
            yield consumer
        finally:
            with self._state_lock:
                closed = self._closed
                if not closed:
                    self._idle_readers.put(consumer)
            if closed:
                consumer.close()

    # -- closing ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error()

    def close(self) -> None:
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._producer.flush(self._timeout)
        self._stop_polling.set()
        self._poller.join(timeout=self._timeout)
        self._producer.close()
        while True:
            try:
                self._idle_readers.get_nowait().close()
            except queue.Empty:
                break
        self._close_admin()

    def _close_admin(self) -> None:
        # AdminClient has no close(); leaving its context destroys the handle and its
        # connections now rather than whenever it is garbage collected.
        self._admin.__exit__(None, None, None)


def _decode(partition: int, offset: int, message: Message) -> Record:
    attributes: dict[str, str] = {}
    trace_headers: dict[str, str] = {}
    headers = message.headers() or []
    for name, raw in headers.items() if isinstance(headers, dict) else headers:
        # Our own records are UTF-8; foreign bytes are replaced rather than failing the read.
        if raw is None:
            value = ""
        else:
            value = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        if name.startswith(_ATTRIBUTE_PREFIX):
            attributes[name[len(_ATTRIBUTE_PREFIX) :]] = value
        elif name.lower() == _CONTENT_TYPE:
            attributes["datacontenttype"] = value
        else:
            trace_headers[name] = value
    data = message.value()
    if isinstance(data, str):
        data = data.encode("utf-8")
    return Record(partition, offset, StoredEvent(attributes, data or b""), trace_headers)

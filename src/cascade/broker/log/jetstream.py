"""A broker log on NATS JetStream (nats-py): one stream per Broker, one subject per partition.

Layout (names from :func:`stream_name` and :func:`subject_prefix`):

- The stream ``knative-broker-<ns>-<broker>`` holds the subjects ``<prefix>.0`` ..
  ``<prefix>.<n-1>``, one per partition; its subject list records the partition count.
- Each event is one message in CloudEvents NATS *binary* mode: ``ce-<attribute>`` headers
  (values percent-encoded like the HTTP binding, since NATS headers are text lines),
  ``Content-Type`` for ``datacontenttype``, the data as the payload. Trace headers ride along
  as plain headers.
- JetStream numbers messages per stream, but the broker log counts offsets per partition. The
  partition offset is stored in the ``Cascade-Offset`` header, and every publish carries
  ``Nats-Expected-Last-Subject-Sequence``: the server refuses it unless the partition's last
  message is the one this writer saw, so two writers can never give out the same offset and
  offsets have no gaps.
- A Trigger's committed offset on a partition is a durable JetStream consumer (filtered on the
  partition's subject, explicit acks): committing offset N acks every message below N through
  that consumer, and the committed offset is read back from the consumer's ack floor (the first
  message after it). Acks only move forward, so a commit below the committed offset is refused.

nats-py is asyncio-only; the blocking :class:`BrokerLog` methods run its coroutines on a private
event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import threading
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RawStreamMsg,
    StorageType,
    StreamConfig,
)

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
from cascade.codec import encode_header_value

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

_ATTRIBUTE_PREFIX = "ce-"
_CONTENT_TYPE = "Content-Type"
_OFFSET_HEADER = "Cascade-Offset"
_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST_SEQUENCE = 10071  # JetStream error code: the expected-last-sequence check failed
# Headers the NATS log keeps for itself: the offset, and the server's own Nats-* headers
# (direct gets answer with Nats-Sequence, Nats-Subject, ...).
_RESERVED_NAMES = frozenset({_OFFSET_HEADER.lower()})
_RESERVED_PREFIX = "nats-"
# Consumer names may not hold '.', '*', '>', whitespace or path separators: escape the rest.
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# Fetch and ack at most this many messages per round trip when a commit moves far.
_ACK_CHUNK = 256
# A consumer redelivers a fetched-but-unacked message (left by a crash mid-commit) after this.
_ACK_WAIT = 5.0


def stream_name(namespace: str, broker: str) -> str:
    """``knative-broker-<ns>-<broker>``, like the Kafka topic (a stream name has no dots)."""
    return f"knative-broker-{namespace}-{broker.replace('.', '_')}"


def subject_prefix(namespace: str, broker: str) -> str:
    """Subjects ``knative-broker.<ns>.<broker>.<partition>`` (dots of the name become '_')."""
    return f"knative-broker.{namespace}.{broker.replace('.', '_')}"


def _escape_name(name: str) -> str:
    return _NAME_UNSAFE.sub(lambda m: "".join(f"={b:02X}" for b in m[0].encode("utf-8")), name)


@dataclass
class _Tail:
    """The newest message of a partition as this writer last saw it."""

    last_seq: int  # stream sequence of the partition's last message; 0 when it has none
    next_offset: int


class NatsLog(BrokerLog):
    """The log of one Broker on stream ``stream`` of the NATS server(s) at ``url``.

    ``subjects`` is the subject prefix (partition ``p`` is ``<subjects>.<p>``);
    ``consumer_prefix`` goes before every consumer name (tests use it to stay apart).
    ``timeout`` bounds every call. An existing stream with another partition count is a
    ``LogError``; so is a server that cannot be reached within ``timeout``.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        subjects: str,
        partitions: int,
        consumer_prefix: str = "",
        *,
        timeout: float = 10.0,
    ) -> None:
        self.partitions = check_partition_count(partitions)
        if not url:
            raise ValueError("the NATS url must name a server, e.g. nats://127.0.0.1:4222")
        if not stream or _NAME_UNSAFE.search(stream):
            raise ValueError(f"stream name {stream!r} must be letters, digits, '-' or '_'")
        self.url = url
        self.stream = stream
        self.subjects = subjects
        self.consumer_prefix = consumer_prefix
        self._timeout = timeout
        self._chooser = PartitionChooser(partitions)
        self._closed = False
        self._state_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"nats-log-{stream}", daemon=True
        )
        self._thread.start()
        # Created on the loop: asyncio locks bind to the loop that first uses them.
        self._tails: list[_Tail | None] = [None] * partitions
        self._append_locks: list[asyncio.Lock] = []
        self._commit_locks: dict[str, asyncio.Lock] = {}
        self._pull_subscriptions: dict[str, JetStreamContext.PullSubscription] = {}
        # Publishes awaiting their ack: a lost connection fails them at once (see _publish).
        self._publishing: set[asyncio.Future[Any]] = set()
        self._nc: Client | None = None
        self._last_error: BaseException | None = None  # the client's, for the start-up error
        try:
            self._submit(self._open())
        except BaseException:
            self._stop_loop()
            raise

    # -- the event loop thread --------------------------------------------------------------

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            # Every coroutine bounds its own NATS calls; the margin covers a slow loop.
            return future.result(timeout=self._timeout * 3 + 5)
        except TimeoutError:
            future.cancel()
            raise LogError(f"NATS stream {self.stream}: no answer in time") from None

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coro.close()
            raise closed_error()
        return self._submit(self._guarded(coro))

    async def _guarded(self, coro: Awaitable[_T]) -> _T:
        """NATS failures become LogError, named with the server and stream."""
        try:
            return await coro
        except (LogError, ValueError):
            raise
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError) as exc:
            raise LogError(f"NATS stream {self.stream} at {self.url}: {_describe(exc)}") from exc

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=self._timeout)
        if not self._thread.is_alive():
            self._loop.close()

    # -- connecting and the stream ----------------------------------------------------------

    async def _open(self) -> None:
        self._append_locks = [asyncio.Lock() for _ in range(self.partitions)]
        try:
            self._nc = await asyncio.wait_for(
                nats.connect(
                    self.url,
                    name=f"cascade-broker-{self.stream}",
                    connect_timeout=min(self._timeout, 5.0),
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,  # keep trying while the server restarts
                    reconnect_time_wait=0.5,
                    # Fail publishes at once while disconnected (ingress answers 503) rather
                    # than buffering them for a server that may not come back in time.
                    pending_size=0,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ),
                timeout=self._timeout,
            )
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            # The client keeps retrying until our timeout: its last error says why.
            cause = self._last_error or exc
            raise LogError(
                f"cannot reach the NATS server at {self.url} ({_describe(cause)}); "
                "is nats-server running with JetStream (-js)?"
            ) from exc
        try:
            await self._guarded(self._ensure_stream())
        except BaseException:
            self._closed = True  # no "disconnected" warning for this close
            await self._nc.close()
            raise

    @property
    def _js(self) -> JetStreamContext:
        assert self._nc is not None, "connected in __init__"
        return self._nc.jetstream(timeout=self._timeout)

    def _subject(self, partition: int) -> str:
        return f"{self.subjects}.{partition}"

    async def _ensure_stream(self) -> None:
        wanted = [self._subject(p) for p in range(self.partitions)]
        jsm = self._js
        try:
            info = await jsm.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            info = None
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            raise LogError(
                f"the NATS server at {self.url} does not answer JetStream requests:"
                " start it with JetStream enabled (nats-server -js)"
            ) from None
        if info is None:
            with contextlib.suppress(nats.js.errors.BadRequestError):  # created meanwhile
                await jsm.add_stream(
                    StreamConfig(
                        name=self.stream,
                        subjects=wanted,
                        storage=StorageType.FILE,
                        allow_direct=True,
                        description=f"Cascade broker log, {self.partitions} partitions",
                    )
                )
            info = await jsm.stream_info(self.stream)
        existing = list(info.config.subjects or [])
        if existing != wanted:
            count = len(existing)
            raise LogError(
                f"NATS stream {self.stream} has {count} partitions (subjects {existing[:3]}...),"
                f" asked for {self.partitions} on {self.subjects}.*: changing the count would"
                " move keyed events to other partitions"
            )

    async def _on_error(self, exc: Exception) -> None:
        if self._nc is None:  # still connecting: reported once, in the start-up error
            self._last_error = exc
            return
        _logger.warning("NATS %s: %s", self.url, _describe(exc))

    async def _on_disconnected(self) -> None:
        if self._closed:
            return
        _logger.warning("NATS %s: disconnected; appends fail until it is back", self.url)
        for publish in self._publishing:
            publish.cancel()

    async def _on_reconnected(self) -> None:
        _logger.warning("NATS %s: reconnected", self.url)
        # Another writer may have appended meanwhile: look the partitions up again.
        self._tails = [None] * self.partitions

    # -- writing ----------------------------------------------------------------------------

    def append_many(
        self, items: Sequence[tuple[StoredEvent, Mapping[str, str] | None]]
    ) -> list[tuple[int, int]]:
        encoded = [_encode(event, headers) for event, headers in items]
        if self._closed:
            raise closed_error()
        if not encoded:
            return []
        by_partition: dict[int, list[tuple[int, StoredEvent, dict[str, str]]]] = {}
        for index, ((event, _), headers) in enumerate(zip(items, encoded, strict=True)):
            by_partition.setdefault(self._chooser.choose(event), []).append((index, event, headers))
        offsets = self._call(self._append_partitions(by_partition))
        return [(offsets[i][0], offsets[i][1]) for i in range(len(items))]

    async def _append_partitions(
        self, by_partition: Mapping[int, list[tuple[int, StoredEvent, dict[str, str]]]]
    ) -> dict[int, tuple[int, int]]:
        results = await asyncio.gather(
            *(self._append_partition(p, batch) for p, batch in by_partition.items())
        )
        return {index: position for result in results for index, position in result}

    async def _append_partition(
        self, partition: int, batch: list[tuple[int, StoredEvent, dict[str, str]]]
    ) -> list[tuple[int, tuple[int, int]]]:
        positions = []
        async with self._append_locks[partition]:
            for index, event, headers in batch:
                offset = await self._publish(partition, event.data, headers)
                positions.append((index, (partition, offset)))
        return positions

    async def _publish(self, partition: int, data: bytes, headers: dict[str, str]) -> int:
        """Store one message as the next offset of ``partition``; returns that offset."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        conflicts = 0
        while loop.time() < deadline:
            tail = self._tails[partition] or await self._read_tail(partition)
            publish = asyncio.ensure_future(
                self._js.publish(
                    self._subject(partition),
                    data,
                    timeout=self._timeout,
                    headers={
                        **headers,
                        _OFFSET_HEADER: str(tail.next_offset),
                        _EXPECTED_LAST_SUBJECT_SEQ: str(tail.last_seq),
                    },
                )
            )
            self._publishing.add(publish)
            try:
                ack = await publish
            except asyncio.CancelledError:
                self._tails[partition] = None
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves
                # _on_disconnected gave up on it: whether NATS stored it is unknown, so the
                # caller answers 503 now instead of after the timeout (a retry may duplicate).
                raise LogError(
                    f"NATS stream {self.stream}: the connection to {self.url} was lost while"
                    " storing"
                ) from None
            except nats.js.errors.APIError as exc:
                self._tails[partition] = None
                if exc.err_code == _WRONG_LAST_SEQUENCE:
                    # Another writer appended here: read its tail and try again, backing off a
                    # little at random so two writers do not keep colliding.
                    conflicts += 1
                    await asyncio.sleep(random.uniform(0, 0.001 * min(conflicts, 20)))
                    continue
                raise
            except BaseException:
                # Unknown whether it was stored: read the partition's tail before the next one.
                self._tails[partition] = None
                raise
            finally:
                self._publishing.discard(publish)
            self._tails[partition] = _Tail(ack.seq, tail.next_offset + 1)
            return tail.next_offset
        raise LogError(
            f"NATS stream {self.stream}: partition {partition} kept moving under us"
            f" ({conflicts} conflicting appends of other writers in {self._timeout:g}s)"
        )

    async def _read_tail(self, partition: int) -> _Tail:
        try:
            last = await self._js.get_msg(
                self.stream, subject=self._subject(partition), direct=True
            )
        except nats.js.errors.NotFoundError:
            return _Tail(0, 0)
        return _Tail(_required_seq(last), _offset_of(last) + 1)

    # -- reading ----------------------------------------------------------------------------

    def end_offset(self, partition: int) -> int:
        check_partition(partition, self.partitions)
        return self._call(self._read_tail(partition)).next_offset

    def read(self, partition: int, offset: int, max_records: int) -> Sequence[Record]:
        check_partition(partition, self.partitions)
        check_offset(offset)
        check_max_records(max_records)
        if max_records == 0:
            self._call(_done())  # still refuse a closed log
            return []
        return self._call(self._read(partition, offset, max_records))

    async def _read(self, partition: int, offset: int, max_records: int) -> list[Record]:
        found = await self._find(partition, offset)
        records: list[Record] = []
        while found is not None:
            records.append(_decode(partition, found))
            if len(records) == max_records:
                break
            found = await self._next_message(partition, _required_seq(found) + 1)
        return records

    async def _next_message(self, partition: int, from_seq: int) -> RawStreamMsg | None:
        """The partition's first message at stream sequence ``from_seq`` or later."""
        try:
            return await self._js.get_msg(
                self.stream,
                seq=from_seq,
                subject=self._subject(partition),
                next=True,
                direct=True,
            )
        except nats.js.errors.NotFoundError:
            return None

    async def _find(self, partition: int, offset: int) -> RawStreamMsg | None:
        """The message at ``offset`` of ``partition``: a binary search over stream sequences
        (partition offsets grow with them); None at or beyond the partition's end."""
        tail = await self._read_tail(partition)
        if offset >= tail.next_offset:
            return None
        low, high = 1, tail.last_seq
        while low <= high:
            middle = (low + high) // 2
            message = await self._next_message(partition, middle)
            if message is None:
                high = middle - 1
                continue
            found = _offset_of(message)
            if found == offset:
                return message
            if found < offset:
                low = _required_seq(message) + 1
            else:
                high = middle - 1
        return None  # removed (stream limits) or never there: nothing to return

    async def _start_seq(self, partition: int, offset: int) -> int:
        """The stream sequence a consumer starting at ``offset`` of ``partition`` starts at."""
        tail = await self._read_tail(partition)
        if offset > tail.next_offset:
            raise LogError(
                f"NATS stream {self.stream}: cannot commit offset {offset} of partition"
                f" {partition}, beyond its end {tail.next_offset}"
            )
        if offset < tail.next_offset:
            message = await self._find(partition, offset)
            if message is not None:
                return _required_seq(message)
        # At the end: the next message of this partition gets a sequence past the stream's last.
        info = await self._js.stream_info(self.stream)
        return info.state.last_seq + 1

    # -- consumer groups --------------------------------------------------------------------

    def _consumer(self, group: str, partition: int) -> str:
        return f"{self.consumer_prefix}{_escape_name(group)}-p{partition}"

    def committed(self, group: str, partition: int) -> int | None:
        check_group(group)
        check_partition(partition, self.partitions)
        return self._call(self._committed(self._consumer(group, partition), partition))

    async def _committed(self, consumer: str, partition: int) -> int | None:
        try:
            info = await self._js.consumer_info(self.stream, consumer)
        except nats.js.errors.NotFoundError:
            return None
        # Everything up to the ack floor is acked; the committed offset is the next message's.
        # Before its first ack a consumer reports a floor of 0: it starts at opt_start_seq.
        if info.ack_floor.consumer_seq:
            floor = info.ack_floor.stream_seq or 0
        else:
            floor = (info.config.opt_start_seq or 1) - 1
        following = await self._next_message(partition, floor + 1)
        if following is None:
            return (await self._read_tail(partition)).next_offset
        return _offset_of(following)

    def commit(self, group: str, offsets: Mapping[int, int]) -> None:
        check_group(group)
        for partition, offset in offsets.items():
            check_partition(partition, self.partitions)
            check_offset(offset, "committed offset")
        if not offsets:
            self._call(_done())
            return
        self._call(self._commit(group, offsets))

    async def _commit(self, group: str, offsets: Mapping[int, int]) -> None:
        await asyncio.gather(
            *(self._commit_one(self._consumer(group, p), p, o) for p, o in offsets.items())
        )

    async def _commit_one(self, consumer: str, partition: int, offset: int) -> None:
        lock = self._commit_locks.setdefault(consumer, asyncio.Lock())
        async with lock:
            current = await self._committed(consumer, partition)
            if current is None:
                await self._create_consumer(consumer, partition, offset)
            elif offset < current:
                raise LogError(
                    f"NATS stream {self.stream}: consumer {consumer} is at offset {current};"
                    f" JetStream acks cannot move it back to {offset}"
                )
            elif offset > current:
                await self._ack_until(consumer, partition, current, offset)

    async def _create_consumer(self, consumer: str, partition: int, offset: int) -> None:
        start = await self._start_seq(partition, offset)
        await self._js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=consumer,
                filter_subject=self._subject(partition),
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=_ACK_WAIT,
                max_ack_pending=_ACK_CHUNK * 4,
                description=f"Cascade commits of {consumer} on partition {partition}",
            ),
        )

    async def _ack_until(self, consumer: str, partition: int, current: int, offset: int) -> None:
        """Fetch through ``consumer`` and ack offsets ``current`` .. ``offset - 1``."""
        subscription = self._pull_subscriptions.get(consumer)
        if subscription is None:
            subscription = await self._js.pull_subscribe_bind(consumer, self.stream)
            self._pull_subscriptions[consumer] = subscription
        missing = set(range(current, offset))
        deadline = asyncio.get_running_loop().time() + self._timeout + _ACK_WAIT
        last: Msg | None = None
        while missing:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise LogError(
                    f"NATS stream {self.stream}: consumer {consumer} did not hand out offsets"
                    f" {min(missing)}..{max(missing)} to ack in time"
                )
            try:
                batch = await subscription.fetch(
                    min(len(missing), _ACK_CHUNK), timeout=min(remaining, 1.0)
                )
            except TimeoutError:
                # nats.errors.TimeoutError, or asyncio's own when nats-py spent the timeout on
                # its no-wait probe (a busy machine). A message left unacked by a crash is
                # redelivered after _ACK_WAIT: fetch again.
                continue
            for message in batch:
                found = _header_offset(message.headers)
                if found in missing:
                    missing.discard(found)
                    if last is not None:
                        await last.ack()
                    last = message  # acked below, waiting for the server's answer
                else:
                    # Past the commit: hand it back for a later commit, after the leftovers.
                    await message.nak(delay=_ACK_WAIT)
        if last is not None:
            await last.ack_sync(timeout=self._timeout)  # acks are ordered: all are in

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        if self._nc is not None:
            with contextlib.suppress(Exception):
                self._submit(self._nc.close())
        self._stop_loop()


async def _done() -> None:
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _required_seq(message: RawStreamMsg) -> int:
    if message.seq is None:
        raise LogError("NATS answered a message without its stream sequence")
    return message.seq


def _header_offset(headers: Mapping[str, str] | None) -> int:
    value = (headers or {}).get(_OFFSET_HEADER)
    if value is None or not value.isdigit():
        raise LogError(f"NATS message without a valid {_OFFSET_HEADER} header: not ours")
    return int(value)


def _offset_of(message: RawStreamMsg) -> int:
    return _header_offset(message.headers)


def _encode(event: StoredEvent, headers: Mapping[str, str] | None) -> dict[str, str]:
    """NATS headers of one event (binary mode), trace headers after the attributes."""
    check_event(event)
    trace_headers = check_headers(headers)
    for name in trace_headers:
        lowered = name.lower()
        if lowered in _RESERVED_NAMES or lowered.startswith(_RESERVED_PREFIX):
            raise ValueError(f"record header {name!r} is reserved by the NATS log")
    encoded: dict[str, str] = {}
    for name, value in event.attributes.items():
        if name == "datacontenttype":
            encoded[_CONTENT_TYPE] = encode_header_value(value)
        else:
            encoded[_ATTRIBUTE_PREFIX + name] = encode_header_value(value)
    for name, value in trace_headers.items():
        encoded[name] = encode_header_value(value)
    return encoded


def _decode(partition: int, message: RawStreamMsg) -> Record:
    attributes: dict[str, str] = {}
    trace_headers: dict[str, str] = {}
    for name, raw in (message.headers or {}).items():
        value = unquote(raw)
        lowered = name.lower()
        if lowered.startswith(_RESERVED_PREFIX) or lowered in _RESERVED_NAMES:
            continue
        if lowered.startswith(_ATTRIBUTE_PREFIX):
            attributes[name[len(_ATTRIBUTE_PREFIX) :]] = value
        elif lowered == _CONTENT_TYPE.lower():
            attributes["datacontenttype"] = value
        else:
            trace_headers[name] = value
    event = StoredEvent(attributes, bytes(message.data or b""))
    return Record(partition, _offset_of(message), event, trace_headers)

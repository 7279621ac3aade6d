"""A whole chain of functions in process, wired by the same Knative manifests as the cluster.

```python
from cascade.testing import Chain

with Chain.from_manifests("k8s/rendered/shop.yaml", functions_dir="functions") as chain:
    chain.send(OrderCreated(...), partitionkey="o-1")
    chain.run_until_idle()
    assert [d.trigger for d in chain.deliveries()] == [...]
```

What is real and what is not:

- The manifests are read by the broker's own loader and each Trigger is served by the broker's
  own egress (``TriggerEgress``): the same filters (attributes, ``filters``, CESQL), delivery
  spec, response classification, reply detection, dead-letter extensions (``knativeerror*``,
  ``Kne-*`` headers) and ``knativekafkapartition``/``knativekafkaoffset`` as ``cascade broker``.
  Events sit in the broker's in-memory log, partitioned by ``partitionkey`` like Kafka.
- Each function runs through its real Flask app (a :class:`~cascade.testing.FunctionClient`
  with a throw-away SQLite folder, or ``settings={"database_url": ...}``). What a handler or
  route publishes goes through the publisher's transport straight into the Broker's ingress
  (validated as the ingress does: 400, 404, 503 over the size limit).
- Nothing sleeps: a retry's backoff (Kafka formula, from the Trigger's delivery spec) is
  recorded on the :class:`Delivery` instead of waited. Per-attempt timeouts are not enforced
  (a handler runs to completion), and no broker spans are made.
- Scheduling is one record at a time for one Trigger, each run to its end (retries, reply, DLS
  included), so every run is one of the orders a Kafka broker may produce. By default records
  are taken in the order they were stored; with ``seed=`` the next one is drawn at random among
  those a Kafka broker could dispatch next: any record for an unordered Trigger, only the
  oldest pending record of a partition for an ordered one. Tests that pass only in storage
  order rely on an order Knative does not promise.
- Process environment is shared: the Service's ``env`` from the manifests is not applied. No
  OIDC tokens are issued and EventPolicies are not checked (``cascade broker --oidc`` does).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from cascade.broker.dispatch.delivery import HttpResponse, TransportError
from cascade.broker.dispatch.egress import EgressConfig, Publish, TriggerEgress
from cascade.broker.dispatch.sender import AttemptTarget, delivery_headers
from cascade.broker.event import Record, StoredEvent
from cascade.broker.http.event import event_from_http, event_size
from cascade.broker.ingress.receiver import broker_path
from cascade.broker.log.memory import MemoryLog
from cascade.broker.settings import DEFAULT_MAX_EVENT_BYTES, BrokerSettings
from cascade.broker.telemetry.activity import Activity, ActivityFeed, ActivityQuery
from cascade.broker.telemetry.metrics import BrokerMetrics
from cascade.broker.topology import Topology, TriggerConfig, load_topology
from cascade.broker.topology.knative import read_objects
from cascade.broker.topology.yaml_reader import expand_paths
from cascade.closing import ClosesOnExit
from cascade.codec import InvalidEvent, binary_headers
from cascade.discovery import discover
from cascade.events import Event, bound_type
from cascade.publish import SinkAnswer
from cascade.reply import outgoing_attributes
from cascade.settings import Settings
from cascade.testing import EventResult, FunctionClient
from cascade.testing.messages import Message

__all__ = ["Chain", "ChainError", "Delivery", "manifest_namespaces"]

INGRESS_HOST: Final = "kafka-broker-ingress.knative-eventing.svc.cluster.local"
DEFAULT_MAX_RECORDS: Final = 10_000


class ChainError(Exception):
    """The chain cannot do what the test asked: a refused event, a reply loop, a bad name."""


@dataclass(frozen=True)
class Delivery:
    """One attempt of the broker to deliver an event for a Trigger.

    ``target`` is ``"subscriber"`` or ``"dead-letter sink"``; ``backoff`` is how long the broker
    would have waited before this attempt (0 for the first); ``status`` is None when nothing
    answered at ``url`` (then ``error`` says why). ``message`` is what was posted: with
    ``knativekafkapartition``/``knativekafkaoffset``, and on a dead-letter sink with the
    ``knativeerror*`` extensions and one per ``Kne-*`` header of the failed answer.
    """

    namespace: str
    trigger: str
    target: str
    url: str
    attempt: int
    backoff: float
    message: Message
    status: int | None
    error: str | None = None
    result: EventResult | None = field(default=None, repr=False)

    @property
    def succeeded(self) -> bool:
        return self.status is not None and self.status < 300

    @property
    def reply(self) -> Message | None:
        """The CloudEvent the function answered with, if any."""
        if self.result is None or not self.result.attributes.get("type"):
            return None
        return Message(self.result.attributes, self.result.body)


@dataclass
class _Trigger:
    config: TriggerConfig
    egress: TriggerEgress


@dataclass
class _Job:
    trigger: _Trigger
    record: Record


class Chain(ClosesOnExit):
    """Functions of a folder, wired by Brokers and Triggers, with an in-memory broker."""

    def __init__(
        self,
        *manifests: str | Path,
        functions_dir: str | Path = "functions",
        settings: Mapping[str, Any] | None = None,
        broker: str | None = None,
        seed: int | None = None,
        partitions: int = 10,
        max_event_bytes: int | None = None,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_hops: int | None = None,
    ) -> None:
        """Load ``manifests`` (files or folders, as ``cascade run -f``) and every function of
        ``functions_dir``.

        ``settings`` are :class:`~cascade.Settings` fields for every function (e.g.
        ``database_url``); each gets its own SQLite folder otherwise, and ``K_SINK`` = the
        ingress of ``broker`` (``"namespace/name"``; needed only when the manifests hold
        several Brokers). ``seed`` draws the dispatch order (see the module docs);
        ``max_records`` bounds one :meth:`run_until_idle` (a Kafka broker has no loop guard);
        ``max_hops`` is ``cascade broker --max-hops``, the opt-in guard that drops a reply
        more than that many replies away from what a producer sent.
        """
        self._broker_settings = BrokerSettings(
            log_kind="memory",
            partitions=partitions,
            max_hops=max_hops,
            max_event_bytes=max_event_bytes or DEFAULT_MAX_EVENT_BYTES,
        )
        self.max_records = max_records
        self._random = None if seed is None else random.Random(seed)
        self._tmp = tempfile.TemporaryDirectory(prefix="cascade-chain-")
        self._runner = _LoopRunner()
        self._jobs: list[_Job] = []
        self._touched: list[FunctionClient] = []  # called since the last outbox flush
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._stored: list[Message] = []
        self._backoff = 0.0  # the wait recorded for the next attempt
        self._activity = ActivityFeed(capacity=max(2 * max_records, 1))
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.clients: dict[str, FunctionClient] = {}
        try:
            self._open(manifests, Path(functions_dir), dict(settings or {}), broker)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_manifests(cls, *manifests: str | Path, **options: Any) -> Chain:
        """``Chain(*manifests, **options)``, for readers who like the source named."""
        return cls(*manifests, **options)

    # ------------------------------------------------------------------ setup

    def _open(
        self,
        manifests: Sequence[str | Path],
        functions_dir: Path,
        settings: dict[str, Any],
        broker: str | None,
    ) -> None:
        found = discover(functions_dir)
        namespaces = manifest_namespaces(manifests)
        urls = {(ns, f.name): _service_url(f.name, ns) for ns in namespaces for f in found}
        self.topology: Topology = load_topology([Path(m) for m in manifests], service_urls=urls)
        if not self.topology.brokers:
            raise ChainError(f"{', '.join(map(str, manifests))}: no Broker in the manifests")
        self._logs = {
            key: MemoryLog(self._broker_settings.partitions) for key in self.topology.brokers
        }
        self._default_broker = self._pick_broker(broker)
        metrics = BrokerMetrics(CollectorRegistry())
        self._triggers: dict[tuple[str, str], list[_Trigger]] = {}
        for trigger in self.topology.triggers:
            key = (trigger.namespace, trigger.broker)
            egress = TriggerEgress(
                EgressConfig.for_trigger(trigger),
                self._attempt,
                self._storer(key),
                metrics,
                max_hops=self._broker_settings.max_hops,
                activity=self._activity,
                sleep=self._record_backoff,
            )
            self._triggers.setdefault(key, []).append(_Trigger(trigger, egress))
        values: dict[str, Any] = {"publish_retries": 0}  # nothing to wait for in process
        values.update(settings)
        values["sink"] = self.ingress_url(self._default_broker)
        self._hosts: dict[str, str] = {}
        for function in found:
            self._hosts.update(
                {
                    urlsplit(_service_url(function.name, ns)).netloc: function.name
                    for ns in namespaces
                }
            )
            data_dir = Path(self._tmp.name) / function.name
            self.clients[function.name] = FunctionClient(
                function.function,
                Settings(**{"data_dir": data_dir, **values}),
                tracer_provider=self.tracer_provider,
                publish_transport=_IngressTransport(self),
                background_relay=False,
            )

    def _pick_broker(self, broker: str | None) -> tuple[str, str]:
        keys = sorted(self.topology.brokers)
        if broker is None:
            if len(keys) > 1:
                names = ", ".join(f"{ns}/{name}" for ns, name in keys)
                raise ChainError(f"several Brokers ({names}): pick one with broker='ns/name'")
            return keys[0]
        namespace, _, name = broker.rpartition("/")
        key = (namespace or "default", name)
        if key not in self.topology.brokers:
            raise ChainError(f"no Broker {broker!r} in the manifests")
        return key

    # ------------------------------------------------------------------ public API

    def __getitem__(self, name: str) -> FunctionClient:
        return self.client(name)

    def client(self, name: str) -> FunctionClient:
        """The client of function ``name``, to call its routes or read its state."""
        try:
            return self.clients[name]
        except KeyError:
            known = ", ".join(sorted(self.clients))
            raise ChainError(f"no function {name!r} in this chain (have: {known})") from None

    def function_at(self, url: str) -> tuple[FunctionClient, str]:
        """The function serving ``url`` (a Trigger subscriber, ``knativeerrordest``) and the
        path to post to; ChainError when no function of the chain answers there."""
        parts = urlsplit(url)
        name = self._hosts.get(parts.netloc)
        if name is None or name not in self.clients:
            raise ChainError(f"nothing answers at {url} in this chain")
        path = parts.path or "/"
        return self.clients[name], f"{path}?{parts.query}" if parts.query else path

    def ingress_url(self, broker: tuple[str, str] | None = None) -> str:
        namespace, name = broker or self._default_broker
        return f"http://{INGRESS_HOST}{broker_path(namespace, name)}"

    def send(
        self,
        event: Event,
        *,
        event_id: str | None = None,
        source: str = "/cascade/testing",
        subject: str | None = None,
        partitionkey: str | None = None,
        extensions: Mapping[str, str] | None = None,
    ) -> Message:
        """Post ``event`` to the Broker's ingress (binary mode) and return it as stored.

        Nothing is delivered until :meth:`run_until_idle`. Raises ChainError when the ingress
        refuses the event."""
        attributes = outgoing_attributes(
            event,
            source=source,
            subject=subject,
            partitionkey=partitionkey,
            extensions=extensions,
            event_id=event_id,
        )
        answer, stored = self._ingress(
            self.ingress_url(), binary_headers(attributes), event.to_json_bytes()
        )
        if stored is None:
            raise ChainError(f"the ingress refused the event: HTTP {answer.status} {answer.body!r}")
        return stored

    def run_until_idle(self) -> int:
        """Deliver until no record is left for any Trigger; returns the records processed.

        Raises ChainError past ``max_records`` (a reply loop: Kafka has no loop guard)."""
        processed = 0
        self._publish_outboxes(self.clients.values())  # what routes committed to publish
        while True:
            job = self._next_job()
            if job is None:
                break
            if processed >= self.max_records:
                with self._lock:
                    self._jobs.insert(0, job)
                    pending = sorted({job.trigger.config.name for job in self._jobs})
                raise ChainError(
                    f"still busy after {processed} records (max_records): a reply loop? "
                    f"pending for {', '.join(pending)}"
                )
            self._runner.run(job.trigger.egress.process(job.record))
            processed += 1
            # What the handlers just called committed to publish (only they can have).
            touched, self._touched = self._touched, []
            self._publish_outboxes(dict.fromkeys(touched))
        return processed

    def _publish_outboxes(self, clients: Iterable[FunctionClient]) -> None:
        """Send what the functions committed with ``ctx.publish``: their relays run only
        here, between deliveries, so a chain's run is deterministic."""
        for client in clients:
            client.flush_outbox()

    def deliveries(
        self,
        trigger: str | None = None,
        *,
        target: str | None = None,
        type: str | type[Event] | None = None,
    ) -> list[Delivery]:
        """Every attempt so far, oldest first; filtered by Trigger name, target, event type."""
        wanted = type if type is None or isinstance(type, str) else bound_type(type)
        return [
            d
            for d in self._deliveries
            if (trigger is None or d.trigger == trigger)
            and (target is None or d.target == target)
            and (wanted is None or d.message.type == wanted)
        ]

    def dead_letters(self, trigger: str | None = None) -> list[Delivery]:
        """Deliveries the dead-letter sinks accepted: one per dead-lettered event."""
        return [d for d in self.deliveries(trigger, target="dead-letter sink") if d.succeeded]

    def events(self, type: str | type[Event] | None = None) -> list[Message]:
        """Everything the Brokers stored (ingress and replies), oldest first."""
        wanted = type if type is None or isinstance(type, str) else bound_type(type)
        return [m for m in self._stored if wanted is None or m.type == wanted]

    def outcomes(self, trigger: str | None = None) -> list[Activity]:
        """How each delivery ended (``delivered``, ``retried``, ``dead-lettered`` with its
        ``reason``, ``dropped``), as the broker's activity feed records it."""
        entries = self._activity.entries(ActivityQuery(after=0))
        return [a for a in entries if trigger is None or a.trigger == trigger]

    def spans(self) -> list[ReadableSpan]:
        """Spans the functions finished so far (one tracer provider for all)."""
        return list(self.exporter.get_finished_spans())

    def close(self) -> None:
        for client in reversed(list(self.clients.values())):
            client.close()
        self.clients.clear()
        self._runner.close()
        self.exporter.clear()
        self._tmp.cleanup()

    # ------------------------------------------------------------------ the Broker ingress

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> SinkAnswer:
        """The Broker ingress (§1.2): 404 for an unknown path, 400 for a non-CloudEvent, 503
        over the size limit, else 202 once stored."""
        return self._ingress(url, headers, body)[0]

    def _ingress(
        self, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[SinkAnswer, Message | None]:
        parts = urlsplit(url)
        path = parts.path[:-1] if parts.path.endswith("/") else parts.path
        namespace, _, name = path.lstrip("/").partition("/")
        key = (namespace, name)
        if parts.netloc != INGRESS_HOST or key not in self._logs:
            return SinkAnswer(404, {}, f"no broker at {url}".encode()), None
        try:
            event = event_from_http(headers, body)
        except InvalidEvent as exc:
            return SinkAnswer(400, {}, str(exc).encode()), None
        size = event_size(event)
        if size > self._broker_settings.max_event_bytes:
            return SinkAnswer(503, {}, f"event of {size} bytes is over the limit".encode()), None
        return SinkAnswer(202, {}, b""), self._store(key, event)

    # ------------------------------------------------------------------ the egress's sender

    async def _attempt(
        self,
        target: AttemptTarget,
        event: StoredEvent,
        record_headers: Mapping[str, str],
        attempt: int,
        timeout: float,
    ) -> HttpResponse:
        """One delivery attempt: the broker's headers (§8.1) posted to the function's app."""
        headers = delivery_headers(target, event)
        backoff, self._backoff = self._backoff, 0.0
        message = Message.from_stored(event)

        def note(status: int | None, error: str | None, result: EventResult | None) -> None:
            self._deliveries.append(
                Delivery(
                    namespace=target.namespace,
                    trigger=target.trigger,
                    target=target.kind,
                    url=target.url,
                    attempt=attempt,
                    backoff=backoff,
                    message=message,
                    status=status,
                    error=error,
                    result=result,
                )
            )

        try:
            client, path = self.function_at(target.url)
        except ChainError as exc:
            note(None, str(exc), None)
            raise TransportError(str(exc)) from None
        self._touched.append(client)
        result = client.post(headers, event.data, path)
        note(result.status, None, result)
        return HttpResponse(result.status, dict(result.headers), result.body)

    # ------------------------------------------------------------------ internals

    async def _record_backoff(self, seconds: float) -> None:
        self._backoff = seconds

    def _storer(self, key: tuple[str, str]) -> Publish:
        async def store(event: StoredEvent, headers: Mapping[str, str]) -> None:
            self._store(key, event)

        return store

    def _store(self, key: tuple[str, str], event: StoredEvent) -> Message:
        # Under the lock: a function's publisher may post from a thread of its own.
        with self._lock:
            partition, offset = self._logs[key].append(event)
            [record] = self._logs[key].read(partition, offset, 1)
            message = Message.from_stored(record.event, partition, offset)
            self._stored.append(message)
            for trigger in self._triggers.get(key, ()):
                self._jobs.append(_Job(trigger, record))
        return message

    def _next_job(self) -> _Job | None:
        with self._lock:
            return self._pick_job() if self._jobs else None

    def _pick_job(self) -> _Job:
        if self._random is None:
            return self._jobs.pop(0)
        heads: set[tuple[int, int]] = set()
        ready = []
        for index, job in enumerate(self._jobs):
            if job.trigger.config.ordered:
                lane = (id(job.trigger), job.record.partition)
                if lane in heads:
                    continue  # an older record of this partition is still pending
                heads.add(lane)
            ready.append(index)
        return self._jobs.pop(self._random.choice(ready))


class _LoopRunner:
    """Runs the egress's coroutines to completion from synchronous test code.

    On the calling thread's own loop, unless that thread already runs one (an ``async def``
    test, a Playwright sync session): then on a loop of a helper thread, since asyncio allows
    one running loop per thread."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()
        self._helper: ThreadPoolExecutor | None = None
        self._helper_runner: asyncio.Runner | None = None

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if not _loop_running():
            self._runner.run(coroutine)
            return
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="cascade-chain")
        self._helper.submit(self._run_in_helper, coroutine).result()

    def _run_in_helper(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._helper_runner is None:
            self._helper_runner = asyncio.Runner()
        self._helper_runner.run(coroutine)

    def close(self) -> None:
        self._runner.close()
        if self._helper is not None:
            if self._helper_runner is not None:
                self._helper.submit(self._helper_runner.close).result()
            self._helper.shutdown()
            self._helper = None


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _IngressTransport:
    """The functions' publisher transport: K_SINK is the chain's Broker ingress."""

    def __init__(self, chain: Chain) -> None:
        self._chain = chain

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> SinkAnswer:
        return self._chain.post(url, headers, body)

    def close(self) -> None:
        """The chain outlives its functions' publishers."""


def _service_url(name: str, namespace: str) -> str:
    """Where Knative Serving puts a Service inside the cluster."""
    return f"http://{name}.{namespace}.svc.cluster.local"


def manifest_namespaces(manifests: Sequence[str | Path]) -> list[str]:
    """The namespaces the manifests' objects live in (read by the broker's hardened reader)."""
    notices: list[str] = []
    found = {
        obj.namespace
        for source in expand_paths([Path(m) for m in manifests], notices)
        for obj in read_objects(source, notices)
    }
    return sorted(found or {"default"})

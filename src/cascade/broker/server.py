"""The broker process: one log per Broker, one dispatcher per Trigger, one HTTP server.

Everything runs on one asyncio loop (aiohttp server and client); log I/O goes to a thread pool.
Start order matters: Trigger cursors are placed before the ingress opens, so no event accepted
by this process can land before a new Trigger's starting offset.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from cascade.broker.dispatch.dispatcher import TriggerDispatcher
from cascade.broker.dispatch.egress import EgressConfig, Publish, ReplyRefused, TriggerEgress
from cascade.broker.dispatch.end_offsets import SharedEndOffsets
from cascade.broker.dispatch.sender import HttpSender
from cascade.broker.event import Record, StoredEvent
from cascade.broker.http.admin import Admin, TriggerView
from cascade.broker.http.client import HttpClient
from cascade.broker.http.fast_ingress import FastIngress, IngressServer
from cascade.broker.ingress.appender import Appender
from cascade.broker.ingress.receiver import BrokerEndpoint, Ingress, broker_path
from cascade.broker.log.base import BrokerLog
from cascade.broker.log.factory import open_log
from cascade.broker.log.retention import start_retention
from cascade.broker.log.tail import TailCache
from cascade.broker.oidc import BrokerIdentity
from cascade.broker.settings import BrokerSettings
from cascade.broker.telemetry.activity import ActivityFeed
from cascade.broker.telemetry.metrics import BrokerMetrics
from cascade.broker.telemetry.tracing import BrokerTracing
from cascade.broker.topology import Topology, TriggerConfig

__all__ = ["BrokerServer", "describe_trigger", "new_event_loop"]

logger = logging.getLogger(__name__)

_LOG_THREADS = 8
# The ingress' own threads: a store never queues behind the dispatchers' reads and commits,
# which on a slow or unreachable Kafka can take every log thread for their whole timeout.
_APPEND_THREADS = 2
_MAX_CONNECTIONS_PER_HOST = 100  # the Kafka data plane's webclient maxPoolSize (§6.3)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop the broker runs on: uvloop's when installed, else asyncio's.

    uvloop's transports, timers and callbacks are in C: measured here, a delivery costs the
    broker 15-40% less CPU and an ingress request ~10% less. ``CASCADE_BROKER_LOOP=asyncio``
    picks the standard loop (to compare or to debug).
    """
    if os.environ.get("CASCADE_BROKER_LOOP", "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def describe_trigger(trigger: TriggerConfig) -> dict[str, Any]:
    """A Trigger's static settings, as ``/-/triggers`` shows them."""
    delivery = trigger.delivery
    return {
        "namespace": trigger.namespace,
        "name": trigger.name,
        "broker": trigger.broker,
        "subscriber": trigger.subscriber,
        "filter": trigger.filter_spec,
        "ordered": trigger.ordered,
        "group": trigger.group,
        "delivery": {
            "retry": delivery.retry,
            "backoffPolicy": delivery.backoff_policy,
            "backoffDelaySeconds": delivery.backoff_delay,
            "timeoutSeconds": delivery.timeout,
            "deadLetterSink": delivery.dead_letter_sink,
        },
    }


class BrokerServer:
    def __init__(
        self,
        topology: Topology,
        settings: BrokerSettings,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.topology = topology
        self.settings = settings
        self.metrics = BrokerMetrics(registry or CollectorRegistry())
        self.activity = ActivityFeed()  # GET /-/activity: what cascade run and cascade tail show
        self._tracing = BrokerTracing()
        self._executor = ThreadPoolExecutor(_LOG_THREADS, thread_name_prefix="broker-log")
        self._append_executor = ThreadPoolExecutor(
            _APPEND_THREADS, thread_name_prefix="broker-append"
        )
        # End offsets, one coalesced question at a time: not queued behind a backlog's reads,
        # so /-/triggers answers and readers learn where the end is while the reads are busy.
        self._ends_executor = ThreadPoolExecutor(1, thread_name_prefix="broker-ends")
        self._logs: dict[tuple[str, str], BrokerLog] = {}
        self._appenders: dict[tuple[str, str], Appender] = {}
        self._tails: dict[tuple[str, str], TailCache] = {}
        self._ends: dict[tuple[str, str], SharedEndOffsets] = {}
        self._dispatchers: dict[tuple[str, str], list[TriggerDispatcher]] = defaultdict(list)
        self._views: list[TriggerView] = []
        self._session: aiohttp.ClientSession | None = None
        self._client: HttpClient | None = None
        self._runner: web.ServerRunner | None = None
        self._draining = False
        self._retention: asyncio.Task[None] | None = None
        self.port = settings.port
        self.identity: BrokerIdentity | None = None
        self._socket: socket.socket | None = None

    @property
    def draining(self) -> bool:
        return self._draining

    def ingress_url(self, namespace: str, name: str) -> str:
        return f"http://{self.settings.host}:{self.port}{broker_path(namespace, name)}"

    async def start(self) -> None:
        """Open the logs, place the Trigger cursors, then open the HTTP port."""
        loop = asyncio.get_running_loop()
        for key in sorted(self.topology.brokers):
            log = await loop.run_in_executor(self._executor, self._open_log, *key)
            self._logs[key] = log
            self._tails[key] = tail = TailCache(log.partitions)
            self._ends[key] = SharedEndOffsets(log, self._ends_executor)
            self._appenders[key] = Appender(
                log, self._append_executor, self._notifier(key, tail), max_batch=512
            )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=_MAX_CONNECTIONS_PER_HOST),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        answer_limit = self.settings.max_answer_bytes
        self._client = HttpClient(
            max_per_origin=_MAX_CONNECTIONS_PER_HOST, max_body_bytes=answer_limit
        )
        if self.settings.oidc:
            # The issuer's URL names the port, and deliveries sign tokens before the ingress
            # opens: bind first.
            self._socket = _bind(self.settings.host, self.settings.port)
            self.port = int(self._socket.getsockname()[1])
            self.identity = BrokerIdentity.for_broker(
                f"http://{_url_host(self.settings.host)}:{self.port}",
                self.settings.data_dir,
                self.topology.policies,
                default_mode=self.settings.oidc_default_mode,
            )
        sender = HttpSender(
            self._client,
            self._session,
            self._tracing,
            self.metrics,
            token_for=None if self.identity is None else self.identity.trigger_token,
            max_answer_bytes=answer_limit,
        )
        for trigger in self.topology.triggers:
            key = (trigger.namespace, trigger.broker)
            if key not in self._logs:
                logger.warning(
                    "trigger %s/%s: broker %s/%s is not defined; the trigger is not ready",
                    trigger.namespace,
                    trigger.name,
                    *key,
                )
                continue
            dispatcher = self._dispatcher_for(trigger, sender)
            await dispatcher.start()
            self._dispatchers[key].append(dispatcher)
            self._views.append(
                TriggerView(trigger.namespace, trigger.name, describe_trigger(trigger), dispatcher)
            )
        await self._open_http()
        self._retention = start_retention(
            self._logs,
            ((t.namespace, t.broker, t.group) for t in self.topology.triggers),
            self.settings.retention,
            self._executor,
        )

    async def stop(self) -> None:
        """Drain: refuse new events, let in-flight work finish for a while, commit, close."""
        self._draining = True
        if self._retention is not None:
            self._retention.cancel()
        await asyncio.gather(*(appender.drain() for appender in self._appenders.values()))
        dispatchers = [d for group in self._dispatchers.values() for d in group]
        await asyncio.gather(*(d.stop(self.settings.drain_seconds) for d in dispatchers))
        # Replies of the last deliveries may still be queued.
        await asyncio.gather(*(appender.drain() for appender in self._appenders.values()))
        self.activity.close()  # ends followers' streams, which would hold up the cleanup
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()
        if self._session is not None:
            await self._session.close()
        loop = asyncio.get_running_loop()
        for log in self._logs.values():
            await loop.run_in_executor(self._executor, log.close)
        self._append_executor.shutdown(wait=True)
        self._ends_executor.shutdown(wait=True)
        self._executor.shutdown(wait=True)

    def _open_log(self, namespace: str, name: str) -> BrokerLog:
        return open_log(
            self.settings.log_kind,
            namespace=namespace,
            broker=name,
            partitions=self.settings.partitions,
            data_dir=self.settings.data_dir,
            bootstrap_servers=self.settings.bootstrap_servers,
            nats_url=self.settings.nats_url,
        )

    def _notifier(self, key: tuple[str, str], tail: TailCache) -> Any:
        ends = self._ends[key]

        def notify(records: Sequence[Record]) -> None:
            tail.add(records)
            ends.note(records)
            partitions = {record.partition for record in records}
            for dispatcher in self._dispatchers.get(key, ()):
                for partition in partitions:
                    dispatcher.notify(partition)

        return notify

    def _dispatcher_for(self, trigger: TriggerConfig, sender: HttpSender) -> TriggerDispatcher:
        key = (trigger.namespace, trigger.broker)
        config = EgressConfig.for_trigger(trigger)
        egress = TriggerEgress(
            config,
            sender.send,
            self._reply_publisher(trigger, self._appenders[key].append),
            self.metrics,
            max_hops=self.settings.max_hops,
            activity=self.activity,
            tracing=self._tracing,
        )
        return TriggerDispatcher(
            name=f"{trigger.namespace}/{trigger.name}",
            group=trigger.group,
            log=self._logs[key],
            executor=self._executor,
            process=egress.process,
            ordered=trigger.ordered,
            max_inflight=self.settings.max_inflight,
            commit_interval=self.settings.commit_interval,
            tail=self._tails[key],
            ends=self._ends[key],
        )

    def _reply_publisher(self, trigger: TriggerConfig, append: Publish) -> Publish:
        identity = self.identity
        if identity is None:
            return append

        async def publish(event: StoredEvent, headers: Mapping[str, str]) -> object:
            refusal = identity.authorize_reply(
                trigger.namespace, trigger.broker, trigger.name, event.attributes
            )
            if refusal is not None:
                raise ReplyRefused(refusal.detail)
            return await append(event, headers)

        return publish

    async def _open_http(self) -> None:
        endpoints = {
            broker_path(*key): BrokerEndpoint(key[0], key[1], appender)
            for key, appender in self._appenders.items()
        }
        ingress = Ingress(
            endpoints,
            self.metrics,
            self._tracing,
            max_event_bytes=self.settings.max_event_bytes,
            draining=lambda: self._draining,
            identity=self.identity,
            body_timeout=self.settings.read_timeout,
        )
        admin = Admin(self._views, self.metrics, self._executor, draining=lambda: self._draining)
        admin_routes = admin.routes()
        admin_routes["/-/activity"] = self.activity.handle
        if self.identity is not None:
            admin_routes.update(_json_routes(self.identity.documents()))

        async def route(request: web.BaseRequest) -> web.StreamResponse:
            # Probe first, then 405 for every other non-POST, then the ingress (§1.2).
            if request.method in ("GET", "HEAD"):
                handler = admin_routes.get(request.path)
                if handler is not None:
                    response: web.StreamResponse = await handler(request)
                    return response
            if request.method != "POST":
                return web.Response(status=405)
            return await ingress.handle(request)

        loop = asyncio.get_running_loop()
        max_body = self.settings.max_event_bytes

        def make_request(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> web.BaseRequest:
            # The body limit is the event limit: anything larger is refused with 503 (§1.5).
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=max_body
            )

        # aiohttp's low-level server: routing is one dict lookup here, no router or middlewares.
        low_level = IngressServer(
            route,
            request_factory=make_request,
            access_log=None,
            max_connections=self.settings.max_connections,
            read_timeout=self.settings.read_timeout,
        )
        # Plain event POSTs skip aiohttp's request objects; everything else is handed to it.
        low_level.fast = FastIngress(
            ingress, max_event_bytes=max_body, read_timeout=self.settings.read_timeout
        )
        self._runner = web.ServerRunner(low_level, shutdown_timeout=5.0)
        await self._runner.setup()
        site: web.BaseSite = (
            web.TCPSite(self._runner, self.settings.host, self.settings.port)
            if self._socket is None
            else web.SockSite(self._runner, self._socket)
        )
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _json_routes(
    documents: Mapping[str, Mapping[str, object]],
) -> dict[str, Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]]:
    def serve(
        document: Mapping[str, object],
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        body = json.dumps(document).encode()

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            return web.Response(body=body, content_type="application/json")

        return handler

    return {path: serve(document) for path, document in documents.items()}

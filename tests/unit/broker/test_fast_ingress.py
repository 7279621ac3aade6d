"""The ingress fast path in process: the 202 waits for durability, a failed store is a 503."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry

from cascade.broker.event import StoredEvent
from cascade.broker.http.fast_ingress import FastIngress, FastIngressProtocol, IngressServer
from cascade.broker.ingress.appender import Appender
from cascade.broker.ingress.receiver import BrokerEndpoint, Ingress
from cascade.broker.log.base import LogError
from cascade.broker.log.memory import MemoryLog
from cascade.broker.telemetry.metrics import BrokerMetrics
from cascade.broker.telemetry.tracing import BrokerTracing

REQUEST = (
    b"POST /ns/default HTTP/1.1\r\nHost: b\r\nce-specversion: 1.0\r\nce-id: e1\r\n"
    b"ce-source: /s\r\nce-type: t\r\nContent-Length: 2\r\n\r\nhi"
)


class GatedLog(MemoryLog):
    """Holds every append until released; fails them when told to."""

    def __init__(self) -> None:
        super().__init__(1)
        self.gate = threading.Event()
        self.fail = False

    def append_many(
        self, items: Sequence[tuple[StoredEvent, Mapping[str, str] | None]]
    ) -> list[tuple[int, int]]:
        self.gate.wait(10)
        if self.fail:
            raise LogError("disk full")
        return super().append_many(items)


class Transport:
    """What the protocol writes, and whether it paused, resumed or closed."""

    def __init__(self) -> None:
        self.written = b""
        self.paused = False
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def _serve(log: GatedLog, metrics: BrokerMetrics, pool: ThreadPoolExecutor) -> Transport:
    appender = Appender(log, pool, lambda records: None)
    ingress = Ingress(
        {"/ns/default": BrokerEndpoint("ns", "default", appender)},
        metrics,
        BrokerTracing(),
        max_event_bytes=1024,
        draining=lambda: False,
    )
    server = IngressServer(_unused_handler, max_connections=10, read_timeout=10.0, access_log=None)
    protocol = FastIngressProtocol(
        server, FastIngress(ingress, max_event_bytes=1024, read_timeout=10.0)
    )
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(REQUEST)
    await asyncio.sleep(0.1)
    # Not durable yet: no answer, and nothing more is read meanwhile.
    assert transport.written == b""
    assert transport.paused
    log.gate.set()
    for _ in range(100):
        if transport.written:
            break
        await asyncio.sleep(0.02)
    protocol.connection_lost(None)
    await appender.drain()
    return transport


async def _unused_handler(request: Any) -> Any:  # pragma: no cover - the fast path never calls it
    raise AssertionError("handed to aiohttp")


def test_the_202_is_written_once_the_event_is_durable() -> None:
    log = GatedLog()
    metrics = BrokerMetrics(CollectorRegistry())
    with ThreadPoolExecutor(1) as pool:
        transport = asyncio.run(_serve(log, metrics, pool))
    assert transport.written == b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    assert not transport.paused
    assert [r.event.attributes["id"] for r in log.read(0, 0, 10)] == ["e1"]
    assert (
        metrics.registry.get_sample_value(
            "cascade_broker_events_accepted_total", {"namespace": "ns", "broker": "default"}
        )
        == 1.0
    )


def test_a_failed_store_is_answered_503_with_the_reason_and_counted() -> None:
    log = GatedLog()
    log.fail = True
    metrics = BrokerMetrics(CollectorRegistry())
    with ThreadPoolExecutor(1) as pool:
        transport = asyncio.run(_serve(log, metrics, pool))
    head = transport.written
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Cascade-Error: storing the event failed\r\n" in head
    assert head.endswith(b"\r\n\r\n")
    assert (
        metrics.registry.get_sample_value("cascade_broker_events_rejected_total", {"code": "503"})
        == 1.0
    )
    assert (
        metrics.registry.get_sample_value(
            "cascade_broker_events_accepted_total", {"namespace": "ns", "broker": "default"}
        )
        is None
    )

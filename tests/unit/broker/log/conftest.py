"""Backends for the shared broker log contract suite."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scripts.kafka_server import tansu_broker
from scripts.nats_server import NatsServer, delete_stream, nats_url_for_tests

from cascade.broker.log.base import BrokerLog
from cascade.broker.log.memory import MemoryLog
from cascade.broker.log.sqlite import SqliteLog


@dataclass
class Backend:
    """Opens one log of one backend; opening again reaches the same stored log."""

    name: str
    persistent: bool
    _open: Callable[[int], BrokerLog]
    opened: list[BrokerLog] = field(default_factory=list)
    cleanup: Callable[[], None] | None = None

    def open(self, partitions: int = 3) -> BrokerLog:
        log = self._open(partitions)
        self.opened.append(log)
        return log

    def close_all(self) -> None:
        for log in self.opened:
            log.close()
        if self.cleanup is not None:
            self.cleanup()


def make_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if name == "memory":
        return Backend(name, persistent=False, _open=MemoryLog)
    if name == "sqlite":
        path = tmp_path / "broker.log.sqlite3"
        return Backend(name, persistent=True, _open=lambda partitions: SqliteLog(path, partitions))
    if name == "kafka":
        from cascade.broker.log.kafka import KafkaLog

        servers: str = request.getfixturevalue("kafka_bootstrap")
        # A fresh topic and group namespace per test: Tansu keeps everything for the session.
        unique = uuid.uuid4().hex[:12]
        return Backend(
            name,
            persistent=True,
            _open=lambda partitions: KafkaLog(
                servers,
                f"knative-broker-test-{unique}",
                partitions,
                group_prefix=f"test-{unique}-",
                timeout=20.0,
            ),
        )
    if name == "nats":
        from cascade.broker.log.jetstream import NatsLog

        url: str = request.getfixturevalue("nats_url")
        # A fresh stream and consumer names per test: the shared server keeps everything.
        stream = f"cascade-test-{uuid.uuid4().hex[:12]}"
        return Backend(
            name,
            persistent=True,
            _open=lambda partitions: NatsLog(url, stream, stream, partitions, timeout=10.0),
            cleanup=lambda: delete_stream(url, stream),
        )
    raise AssertionError(f"unknown backend {name}")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a Tansu broker started once for the session."""
    with tansu_broker() as servers:
        yield servers


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A NATS server with JetStream: CASCADE_TEST_NATS_URL or 127.0.0.1:4222 when one answers,
    else one of our own for the session."""
    shared = nats_url_for_tests()
    if shared is not None:
        yield shared
        return
    with NatsServer() as server:
        yield server.url


KAFKA = pytest.param("kafka", marks=pytest.mark.kafka)
NATS = pytest.param("nats", marks=pytest.mark.nats)


@pytest.fixture(params=["memory", "sqlite", KAFKA, NATS])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = make_backend(request.param, request, tmp_path)
    yield made
    made.close_all()


@pytest.fixture(params=["sqlite", KAFKA, NATS])
def persistent_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = make_backend(request.param, request, tmp_path)
    yield made
    made.close_all()

"""The servers behind the broker logs that are not files, for tests that run `cascade broker`
or `cascade run` on them: a fresh Tansu for kafka, a fresh nats-server (JetStream, temporary
store) for nats. Each test gets its own, so nothing collides across tests or reruns."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from scripts.kafka_server import tansu_broker
from scripts.nats_server import NatsServer

# Parametrize a test over the server-backed logs with these.
SERVER_LOGS = [
    pytest.param("kafka", marks=pytest.mark.kafka, id="kafka"),
    pytest.param("nats", marks=pytest.mark.nats, id="nats"),
]


@contextlib.contextmanager
def log_server(kind: str) -> Iterator[list[str]]:
    """Start the server log ``kind`` needs; yield the `--log ...` arguments that reach it."""
    if kind == "kafka":
        with tansu_broker() as bootstrap_servers:
            yield ["--log", "kafka", "--bootstrap-servers", bootstrap_servers]
    elif kind == "nats":
        with NatsServer() as server:
            yield ["--log", "nats", "--nats-url", server.url]
    else:
        raise ValueError(f"no server behind the {kind} log")

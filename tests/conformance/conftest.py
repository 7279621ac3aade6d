"""Fixtures of the black-box broker suite: a recording subscriber and `cascade broker` processes.

The brokers ``start_broker`` starts use the memory log unless a test names one.
``CASCADE_CONFORMANCE_LOG=nats`` (or ``kafka``) runs them on that log instead, each broker on a
fresh server of its own, so the whole suite can be run against a server-backed log.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.harness import BrokerProcess, Subscriber, write_manifests
from tests.log_servers import log_server

StartBroker = Callable[..., BrokerProcess]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def subscriber() -> Iterator[Subscriber]:
    sub = Subscriber()
    yield sub
    sub.close()


@pytest.fixture(scope="module")
def start_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartBroker]:
    """Start a broker over the given manifest objects; every one is stopped after the module."""
    started: list[BrokerProcess] = []
    default_log = os.environ.get("CASCADE_CONFORMANCE_LOG", "memory")
    servers = contextlib.ExitStack()

    def start(
        objects: Iterable[dict[str, Any]],
        *,
        log: str | None = None,
        args: Sequence[str] = (),
        workdir: Path | None = None,
    ) -> BrokerProcess:
        workdir = workdir or tmp_path_factory.mktemp("broker")
        manifests = write_manifests(workdir / "manifests.yaml", objects)
        kind = log or default_log
        server_args: list[str] = []
        if log is None and kind in ("kafka", "nats"):
            server_args = servers.enter_context(log_server(kind))[2:]  # after "--log KIND"
        broker = BrokerProcess(manifests, workdir, log=kind, args=[*server_args, *args])
        started.append(broker)
        return broker.start()

    with servers:
        yield start
        for broker in started:
            broker.stop()

"""Fixtures of the black-box broker suite: a recording subscriber and `cascade broker` processes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.harness import BrokerProcess, Subscriber, write_manifests

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

    def start(
        objects: Iterable[dict[str, Any]],
        *,
        log: str = "memory",
        args: Sequence[str] = (),
        workdir: Path | None = None,
    ) -> BrokerProcess:
        workdir = workdir or tmp_path_factory.mktemp("broker")
        manifests = write_manifests(workdir / "manifests.yaml", objects)
        broker = BrokerProcess(manifests, workdir, log=log, args=args)
        started.append(broker)
        return broker.start()

    yield start
    for broker in started:
        broker.stop()

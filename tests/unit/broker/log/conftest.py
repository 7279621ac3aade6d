"""Backends for the shared broker log contract suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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

    def open(self, partitions: int = 3) -> BrokerLog:
        log = self._open(partitions)
        self.opened.append(log)
        return log

    def close_all(self) -> None:
        for log in self.opened:
            log.close()


def make_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if name == "memory":
        return Backend(name, persistent=False, _open=MemoryLog)
    if name == "sqlite":
        path = tmp_path / "broker.log.sqlite3"
        return Backend(name, persistent=True, _open=lambda partitions: SqliteLog(path, partitions))
    raise AssertionError(f"unknown backend {name}")


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = make_backend(request.param, request, tmp_path)
    yield made
    made.close_all()


@pytest.fixture(params=["sqlite"])
def persistent_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = make_backend(request.param, request, tmp_path)
    yield made
    made.close_all()

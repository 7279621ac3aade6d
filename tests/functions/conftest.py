"""Fixtures for the shop's in-process tests: each function behind a FunctionClient with its own
SQLite folder, and an HTTP sink standing in for the broker's ingress (K_SINK)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest

from cascade.settings import Settings
from cascade.testing import EventResult, FunctionClient
from tests.integration.postgres import throwaway_schema
from tests.shop import load
from tests.unit.runtime.sink import Sink

ClientFactory = Callable[..., FunctionClient]


def body(result: EventResult) -> Any:
    return orjson.loads(result.body)


def sink_events(sink: Sink) -> list[tuple[dict[str, str], bytes]]:
    """What the sink received, as (CloudEvents attributes, data) pairs (binary mode)."""
    found = []
    for headers, data in sink.requests:
        attributes = {k[3:]: unquote(v) for k, v in headers.items() if k.startswith("ce-")}
        if "content-type" in headers:
            attributes["datacontenttype"] = headers["content-type"]
        found.append((attributes, data))
    return found


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests start from the documented defaults, whatever the developer's shell exports."""
    for name in (
        "PAYMENT_FAULT_RATE",
        "PAYMENT_FAULT_MODE",
        "PAYMENT_HANG_SECONDS",
        "PAYMENT_FAULT_SEED",
        "PAYMENT_LIMIT_CENTS",
        "PAYMENT_BLOCKED_CUSTOMERS",
        "SMTP_URL",
        "SMTP_TIMEOUT",
        "NOTIFICATION_FROM",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NOTIFICATION_OUTBOX", str(tmp_path / "outbox"))


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as s:
        yield s


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite files, the default), or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield None
        return
    with throwaway_schema("shop_test") as url:
        yield url


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[ClientFactory]:
    """``make_client("order", sink=url)``: a client for one function, closed after the test."""
    opened: list[FunctionClient] = []

    def make(name: str, *, sink: str | None = None, **settings: Any) -> FunctionClient:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data" / name,
            "sink": sink,
            "publish_retries": 0,
            "max_body_bytes": 64 * 1024,
            # The operator routes (PUT /faults, ...) are on, as under `cascade run`;
            # tests/functions/test_admin_routes.py checks them off.
            "admin_routes": True,
        }
        values.update(settings)
        client = FunctionClient(load(name).fn, Settings(**values))
        opened.append(client)
        return client

    yield make
    for client in reversed(opened):
        client.close()

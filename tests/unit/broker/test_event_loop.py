"""The broker's event loop: uvloop when installed (a pinned dependency), asyncio on request."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from cascade.broker.server import new_event_loop


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CASCADE_BROKER_LOOP", raising=False)
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_the_standard_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_BROKER_LOOP", " AsyncIO ")
    loop = new_event_loop()
    try:
        assert isinstance(loop, asyncio.BaseEventLoop)
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_the_broker_runs_its_coroutines_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CASCADE_BROKER_LOOP", raising=False)

    async def loop_kind() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        assert runner.run(loop_kind()) is uvloop.Loop

"""Issue 10, item 2: the broker's https path (aiohttp) reads a subscriber's answer up to
``--max-answer-bytes`` too. The bound is in the reading, not in TLS, so it is checked here on
the same aiohttp session code over plain HTTP, against the odd subscriber's endless answers."""

from __future__ import annotations

import asyncio
import tracemalloc

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from cascade.broker.dispatch.sender import HttpSender
from cascade.broker.http.client import HttpClient, HttpProtocolError
from cascade.broker.telemetry.metrics import BrokerMetrics
from cascade.broker.telemetry.tracing import BrokerTracing
from tests.hostile.odd_subscriber import OddSubscriber

LIMIT = 1024 * 1024


@pytest.mark.parametrize("path", ["/endless-chunk", "/many-chunks", "/huge-length", "/until-close"])
def test_the_aiohttp_path_stops_at_the_answer_limit(path: str) -> None:
    async def attempt(url: str) -> None:
        async with aiohttp.ClientSession() as session:
            sender = HttpSender(
                HttpClient(),
                session,
                BrokerTracing(),
                BrokerMetrics(CollectorRegistry()),
                max_answer_bytes=LIMIT,
            )
            await sender._send_with_aiohttp(url, {"ce-id": "1"}, b"{}", timeout=30)

    with OddSubscriber() as odd:
        tracemalloc.start()
        try:
            with pytest.raises(HttpProtocolError, match=f"larger than {LIMIT} bytes"):
                asyncio.run(attempt(odd.url(path)))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 16 * LIMIT, f"peak {peak / LIMIT:.0f} MiB while reading one answer"

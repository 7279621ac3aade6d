"""A console served in-process over fake upstreams (tests/console/fakes.py), and Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cascade.console.server import ConsoleServer
from cascade.console.topology import graph_of
from cascade.runner.plan import make_plan
from cascade.traces.store import STORE_FILE, SpanStore
from tests.console.fakes import Upstreams, activity_entry, dead_letter, hostile_spans

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
_DELIVERIES = 'cascade_broker_deliveries_total{namespace="default",outcome="%s",trigger="%s"} %s'
METRICS = "\n".join(
    [
        "# TYPE cascade_broker_deliveries counter",
        _DELIVERIES % ("delivered", "inventory-order-created", "7.0"),
        _DELIVERIES % ("retried", "payment-inventory-reserved", "5.0"),
        _DELIVERIES % ("dead-lettered", "payment-inventory-reserved", "1.0"),
        "# TYPE cascade_broker_lag_events gauge",
        'cascade_broker_lag_events{namespace="default",trigger="inventory-order-created"} 2.0',
        "# TYPE cascade_broker_events_accepted counter",
        'cascade_broker_events_accepted_total{broker="shop",namespace="default"} 8.0',
        "",
    ]
)


def shop_graph(data_dir: Path) -> dict[str, Any]:
    plan = make_plan(
        manifests=[ROOT / "k8s" / "rendered" / "shop.yaml"],
        functions_dir=ROOT / "functions",
        data_dir=data_dir,
        host="127.0.0.1",
        port=0,
        base_port=0,
        environ={},
    )
    return graph_of(plan)


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    with Upstreams() as fake:
        fake.activity = [
            activity_entry(1, outcome="delivered", status=200, reason=None),
            activity_entry(2),
        ]
        fake.metrics = METRICS
        fake.dead_letters = {1: dead_letter(1, f"{fake.url}/subscriber")}
        yield fake


@pytest.fixture
def console(tmp_path: Path, upstreams: Upstreams) -> Iterator[ConsoleServer]:
    with SpanStore(tmp_path / STORE_FILE) as store:
        hostile_spans(store)
    server = ConsoleServer(
        graph=shop_graph(tmp_path),
        broker_url=upstreams.url,
        span_store=tmp_path / STORE_FILE,
        dead_letter_url=upstreams.url,
        ingress=f"{upstreams.url}/default/shop",
        data_dir=tmp_path,
    )
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (its own browser download is not used).

    Per module, not per session: Playwright's sync API keeps an event loop running in the main
    thread while it is open, and every later test calling ``asyncio.run`` would fail."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium "
            "(.ci/run installs it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()

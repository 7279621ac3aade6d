"""One ``cascade run`` of the shop for the process-level observability tests, and the orders
they look at: one per ending of the saga, one retried, one dead-lettered and replayed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from cascade.events import bound_type
from cascade.traces.store import STORE_FILE, SpanStore, StoredSpan
from functions.shop.events import SHOP_EVENTS, InventoryReserved
from tests.e2e.harness import (
    ShopRun,
    activity,
    call,
    fast_manifests,
    get_json,
    place_order,
    run_cli,
    send_json,
    wait_until,
)
from tests.observability.trace_shape import Faults, Routes
from tests.shop import FUNCTIONS
from tests.unit.telemetry.otlp_collector import Collector

PAYMENT_TRIGGER = "payment-inventory-reserved"


@dataclass
class Scenario:
    order_id: str
    saga: str  # a key of functions.shop.topology.SAGAS
    faults: Faults = field(default_factory=Faults)
    replayed: tuple[str, str] | None = None  # (Trigger, event type) of a replayed dead letter


@pytest.fixture(scope="session")
def forwarded() -> Iterator[Collector]:
    """A stand-in OTLP collector that ``cascade run`` forwards every span to."""
    collector = Collector()
    try:
        yield collector
    finally:
        collector.close()


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory, forwarded: Collector) -> Iterator[ShopRun]:
    base = tmp_path_factory.mktemp("observability")
    run = ShopRun(
        data_dir=base / "data",
        # Retries from 0.1 s: a dead letter after about 3 s, time enough to switch faults off
        # between two attempts for the retried order.
        manifests=fast_manifests(base, "PT0.1S"),
        env={
            "NOTIFICATION_OUTBOX": str(base / "outbox"),
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            # Read by cascade run as where to forward spans (its children export to it).
            "OTEL_EXPORTER_OTLP_ENDPOINT": forwarded.url.removesuffix("/v1/traces"),
            # Two workers per function, as on a cluster: the metrics of both must add up.
            "CASCADE_WORKERS": "2",
        },
    )
    try:
        run.start()
        yield run
        assert run.stop() == 0, run.output()
    finally:
        run.kill_all()


@pytest.fixture(scope="session")
def routes(shop: ShopRun) -> Routes:
    return Routes.from_manifests(shop.manifests, FUNCTIONS, [bound_type(m) for m in SHOP_EVENTS])


def _state(shop: ShopRun, order_id: str) -> str:
    return str(get_json(f"{shop.url('order')}/orders/{order_id}")["state"])


def wait_final(shop: ShopRun, order_id: str, state: str, timeout: float = 60) -> None:
    wait_until(lambda: _state(shop, order_id) == state, timeout, f"order {order_id} {state}")


def _entries(shop: ShopRun, order_id: str, outcome: str) -> list[dict[str, object]]:
    return [
        entry
        for entry in activity(shop.broker)
        if entry.get("partitionkey") == order_id
        and entry.get("trigger") == PAYMENT_TRIGGER
        and entry.get("outcome") == outcome
    ]


def _faults(shop: ShopRun, on: bool) -> None:
    payment = shop.url("payment")
    if on:
        answer = send_json("PUT", f"{payment}/faults", {"rate": 1, "mode": "error"})
    else:
        answer = call("DELETE", f"{payment}/faults")
    assert answer.status == 200, answer.body


@pytest.fixture(scope="session")
def scenarios(shop: ShopRun) -> dict[str, Scenario]:
    """Place the orders (in an order that keeps faults from touching the wrong one)."""
    order_url = shop.url("order")
    found = {
        "confirmed": Scenario(
            place_order(order_url, [("MUG", 1)], customer="cust-obs"), "confirmed"
        ),
        "out_of_stock": Scenario(place_order(order_url, [("VINYL", 1)]), "out_of_stock"),
        "declined": Scenario(
            place_order(order_url, [("MUG", 1)], customer="cust-blocked"), "declined"
        ),
    }
    wait_final(shop, found["confirmed"].order_id, "CONFIRMED")
    wait_final(shop, found["out_of_stock"].order_id, "CANCELLED")
    wait_final(shop, found["declined"].order_id, "CANCELLED")

    # Every payment fails until the retries run out: the event is dead-lettered.
    _faults(shop, on=True)
    try:
        parked = place_order(order_url, [("STICKER", 1)], customer="cust-obs")
        wait_until(lambda: _entries(shop, parked, "dead-lettered"), 60, "a dead letter")
        # Then payment fails until its first retry, and succeeds afterwards.
        retried = place_order(order_url, [("STICKER", 2)], customer="cust-obs")
        wait_until(lambda: _entries(shop, retried, "retried"), 30, "a retry", interval=0.02)
    finally:
        _faults(shop, on=False)
    wait_final(shop, retried, "CONFIRMED")
    failures = len(_entries(shop, retried, "retried"))
    found["retried"] = Scenario(retried, "confirmed", Faults(failures={PAYMENT_TRIGGER: failures}))
    found["dead_lettered"] = Scenario(
        parked,
        "confirmed",
        Faults(dead_lettered=frozenset({PAYMENT_TRIGGER})),
        replayed=(PAYMENT_TRIGGER, bound_type(InventoryReserved)),
    )

    dead = get_json(f"{shop.url('dead-letter')}/dead-letters?order_id={parked}")["dead_letters"]
    assert len(dead) == 1, dead
    replay = run_cli("dlq", "--data-dir", str(shop.data_dir), "replay", str(dead[0]["id"]))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    wait_final(shop, parked, "CONFIRMED")
    return found


def spans_store(shop: ShopRun) -> SpanStore:
    return SpanStore(shop.data_dir / STORE_FILE, readonly=True)


def settled_traces(
    shop: ShopRun, order_id: str, expected_spans: list[int], timeout: float = 30
) -> list[list[StoredSpan]]:
    """The order's traces, oldest first, once each has at least the expected number of spans
    and no more arrive for a moment (spans come in batches from every process)."""
    deadline = time.monotonic() + timeout
    last: list[int] = []
    with spans_store(shop) as store:
        while True:
            traces = [store.trace(trace_id) for trace_id in store.traces_of(order_id)]
            counts = [len(spans) for spans in traces]
            enough = len(counts) >= len(expected_spans) and all(
                have >= want for have, want in zip(counts, expected_spans, strict=False)
            )
            if (enough and counts == last) or time.monotonic() > deadline:
                return traces
            last = counts
            time.sleep(0.5)

"""The shop's own metrics behind its dashboards: the order funnel and the dead-letter queue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cascade.broker.dispatch.dead_letter import dead_letter_event
from cascade.broker.event import StoredEvent
from cascade.codec import binary_headers
from cascade.loader import load_module
from cascade.settings import Settings
from cascade.telemetry.tracing import ORIGIN_LINK
from cascade.testing import FunctionClient
from functions.shop import samples

ROOT = Path(__file__).resolve().parents[2]
ORDER = {
    "customer": {"id": "cust-metrics", "email": "m@example.com"},
    "items": [{"sku": "MUG", "quantity": 1}],
}
ORIGIN = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def order(tmp_path: Path) -> Iterator[FunctionClient]:
    # No sink: the order's event waits in the outbox, which is all these tests need.
    settings = Settings(data_dir=tmp_path / "order", publish_retries=0)
    with FunctionClient(load_module(ROOT / "functions" / "order").fn, settings) as client:
        yield client


@pytest.fixture
def dead_letter(tmp_path: Path) -> Iterator[FunctionClient]:
    settings = Settings(data_dir=tmp_path / "dead-letter", admin_routes=True)  # replay count
    with FunctionClient(load_module(ROOT / "functions" / "dead-letter").fn, settings) as client:
        yield client


def orders(client: FunctionClient, state: str) -> float:
    return client.metric("cascade_shop_orders_total", {"function": "order", "state": state})


def place(client: FunctionClient, key: str) -> str:
    result = client.request("POST", "/orders", json=ORDER, headers={"Idempotency-Key": key})
    assert result.status in (200, 201), result.body
    return str(result.headers["Location"]).rsplit("/", 1)[1]


def test_the_order_funnel_counts_each_order_once_per_state(order: FunctionClient) -> None:
    first = place(order, "k1")
    second = place(order, "k2")
    assert place(order, "k1") == first  # the same request again: no second order
    assert orders(order, "placed") == 2
    assert order.metric("cascade_shop_orders_pending", {"function": "order"}) == 2

    authorized = samples.payment_authorized(first, {"MUG": 1})
    for _ in range(2):  # a redelivery is answered from the dedupe store
        assert order.send(authorized, event_id="pay-1").status == 200
    assert order.send(samples.inventory_rejected(second, {"MUG": 1})).status == 200
    # A late result for a final order changes nothing, so counts nothing.
    assert order.send(samples.payment_declined(first)).status == 204
    assert orders(order, "confirmed") == 1
    assert orders(order, "cancelled") == 1
    assert order.metric("cascade_shop_orders_pending", {"function": "order"}) == 0


def park(client: FunctionClient, event_type: str = "com.example.shop.inventory.reserved") -> None:
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/inventory",
        "type": event_type,
        "partitionkey": "order-1",
        "traceparent": ORIGIN,
        "datacontenttype": "application/json",
    }
    letter = dead_letter_event(StoredEvent(attributes, b"{}"), "http://payment/", None)
    result = client.post(binary_headers(letter.attributes), letter.data, path="/dead-letters")
    assert result.status == 204, result.body


def test_the_dead_letter_queue_reports_depth_age_and_arrivals(dead_letter: FunctionClient) -> None:
    reserved = {"function": "dead-letter", "type": "com.example.shop.inventory.reserved"}
    age = ("cascade_dead_letters_oldest_age_seconds", {"function": "dead-letter"})
    assert dead_letter.metric(*age) == 0
    assert dead_letter.metric("cascade_dead_letters_waiting", reserved) == 0
    park(dead_letter)
    park(dead_letter)
    park(dead_letter, "com.example.shop.order.created")
    assert dead_letter.metric("cascade_dead_letters_received_total", reserved) == 2
    assert dead_letter.metric("cascade_dead_letters_waiting", reserved) == 2
    assert 0 <= dead_letter.metric(*age) < 60
    for entry_id in (1, 2, 3):
        assert dead_letter.request("POST", f"/dead-letters/{entry_id}/replayed").status == 200
    assert dead_letter.metric("cascade_dead_letters_waiting", reserved) == 0
    assert dead_letter.metric(*age) == 0
    assert dead_letter.metric("cascade_dead_letters_received_total", reserved) == 2


def test_the_sink_span_links_to_where_the_event_started(dead_letter: FunctionClient) -> None:
    park(dead_letter)
    # The catch-all handler's span, like any handler's: linked to the origin.
    (span,) = [s for s in dead_letter.spans() if s.name.startswith("process ")]
    (link,) = span.links
    assert f"{link.context.trace_id:032x}" == ORIGIN.split("-")[1]
    assert link.attributes == {"cascade.link": ORIGIN_LINK}

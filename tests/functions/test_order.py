"""order: the HTTP API (validation, outbox publishing, idempotency keys) and the order state
machine driven by inventory and payment results."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from cascade.testing import EventResult, FunctionClient
from functions.shop import samples
from functions.shop.events import OrderCancelled, OrderConfirmed, OrderCreated
from tests.functions.conftest import ClientFactory, body, sink_events
from tests.shop import load
from tests.unit.runtime.sink import Sink

order = load("order")

VALID: dict[str, Any] = {
    "customer": {"id": "cust-ada", "email": "ada@example.com"},
    "items": [{"sku": "MUG", "quantity": 2}, {"sku": "POSTER", "quantity": 1}],
}


@pytest.fixture
def client(make_client: ClientFactory, sink: Sink) -> FunctionClient:
    return make_client("order", sink=sink.url)


def wait_for(probe: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def place(client: FunctionClient, payload: Any = None, **kwargs: Any) -> EventResult:
    return client.request("POST", "/orders", json=VALID if payload is None else payload, **kwargs)


def placed(client: FunctionClient, payload: Any = None, *, sent: bool = True) -> dict[str, Any]:
    """Place an order (201); with a sink and ``sent``, also wait until the relay sent its
    event, so the documents tests compare no longer change under them."""
    result = place(client, payload)
    assert result.status == 201, result.body
    document: dict[str, Any] = body(result)
    if sent and client.runtime.relay is not None:
        wait_for(lambda: client.runtime.outbox.pending() == 0, "order.created sent")
        document["events_pending"] = 0
    return document


def state_of(client: FunctionClient, order_id: str) -> dict[str, Any]:
    result = client.get(f"/orders/{order_id}")
    assert result.status == 200
    document: dict[str, Any] = body(result)
    return document


# --------------------------------------------------------------------------- POST /orders


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_placing_an_order_stores_it_and_publishes_order_created(
    client: FunctionClient, sink: Sink
) -> None:
    result = place(client)
    assert result.status == 201
    document = body(result)
    assert result.headers["Location"] == f"/orders/{document['id']}"
    assert document["state"] == "PENDING"
    assert document["customer"] == VALID["customer"]
    assert document["items"] == VALID["items"]
    assert [h["state"] for h in document["history"]] == ["PENDING"]

    wait_for(lambda: sink.requests, "the relay to send order.created")
    [(attributes, data)] = sink_events(sink)
    assert attributes["type"] == "com.example.shop.order.created"
    assert attributes["source"] == "/order"
    assert attributes["partitionkey"] == attributes["subject"] == document["id"]
    assert attributes["traceparent"]
    event = OrderCreated.model_validate_json(data)
    assert (event.order_id, event.customer.email) == (document["id"], "ada@example.com")
    assert [(i.sku, i.quantity) for i in event.items] == [("MUG", 2), ("POSTER", 1)]
    wait_for(lambda: state_of(client, document["id"])["events_pending"] == 0, "the row deleted")
    assert {**state_of(client, document["id"]), "events_pending": None} == {
        **document,
        "events_pending": None,
    }


def test_the_relay_retries_until_the_broker_takes_the_event(make_client: ClientFactory) -> None:
    with Sink(statuses=[503, 503]) as sink:
        client = make_client("order", sink=sink.url)
        document = placed(client, sent=False)
        wait_for(lambda: len(sink.requests) == 3, "two failures then the accepted send")
        wait_for(lambda: body(client.get("/outbox")) == {"pending": 0}, "nothing pending")
        assert state_of(client, document["id"])["events_pending"] == 0
        ids = {attributes["id"] for attributes, _ in sink_events(sink)}
        assert len(ids) == 1  # every attempt is the same event: consumers dedupe copies
        assert client.metric("cascade_outbox_pending", {"function": "order"}) == 0


def test_without_a_sink_the_event_waits_in_the_outbox(make_client: ClientFactory) -> None:
    client = make_client("order")  # no K_SINK
    assert placed(client)["events_pending"] == 1
    assert body(client.request("POST", "/outbox/flush")) == {
        "published": 0,
        "failed": 0,
        "pending": 1,
    }
    assert client.metric("cascade_outbox_pending", {"function": "order"}) == 1


def test_with_the_broker_port_closed_the_order_is_201_and_sent_once_it_is_back(
    make_client: ClientFactory,
) -> None:
    # Issue 10 items 5/6: the POST answers after its commit and never waits on K_SINK.
    port = closed_port()
    client = make_client(
        "order",
        sink=f"http://127.0.0.1:{port}/ns/broker",
        publish_backoff_seconds=0.05,
        publish_backoff_max_seconds=0.2,
    )
    document = placed(client, sent=False)
    assert body(client.request("POST", "/outbox/flush"))["pending"] == 1
    assert state_of(client, document["id"])["events_pending"] == 1
    with Sink(port=port) as sink:
        wait_for(lambda: sink.requests, "the relay to send once the broker listens")
        wait_for(lambda: client.runtime.outbox.pending() == 0, "the row deleted")
        [(attributes, _)] = sink_events(sink)
        assert attributes["partitionkey"] == document["id"]


def test_with_the_broker_hanging_orders_are_still_201_and_sent_when_it_answers(
    make_client: ClientFactory,
) -> None:
    hold = threading.Event()
    with Sink(hold=hold) as sink:
        try:
            client = make_client("order", sink=sink.url, publish_timeout_seconds=120)
            first = placed(client, sent=False)
            wait_for(lambda: sink.requests, "the relay's send to reach the hanging broker")
            # The relay is stuck inside a send: placing orders does not wait for it.
            second = placed(client, sent=False)
            assert client.runtime.outbox.pending() == 2
            assert len(sink.requests) == 1
        finally:
            hold.set()
        wait_for(lambda: client.runtime.outbox.pending() == 0, "both events sent")
        sent = [attributes["partitionkey"] for attributes, _ in sink_events(sink)]
        assert sent == [first["id"], second["id"]]


def test_the_relay_thread_runs_from_start_to_close(make_client: ClientFactory, sink: Sink) -> None:
    def relays() -> int:
        return sum(t.name == "cascade-outbox-order" for t in threading.enumerate())

    before = relays()
    client = make_client("order", sink=sink.url)
    assert relays() == before + 1  # started with the app, before any request
    client.close()
    assert relays() == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([VALID], "(body)"),
        ("an order", "(body)"),
        ({"items": VALID["items"]}, "customer"),
        ({"customer": VALID["customer"]}, "items"),
        ({**VALID, "items": []}, "items"),
        ({**VALID, "items": [{"sku": f"S{n}", "quantity": 1} for n in range(51)]}, "items"),
        ({**VALID, "items": [{"sku": "MUG", "quantity": 1}] * 2}, "items"),
        ({**VALID, "items": "MUG"}, "items"),
        ({**VALID, "items": [{"sku": "MUG"}]}, "items.0.quantity"),
        ({**VALID, "items": [{"sku": "MUG", "quantity": 0}]}, "items.0.quantity"),
        ({**VALID, "items": [{"sku": "MUG", "quantity": -1}]}, "items.0.quantity"),
        ({**VALID, "items": [{"sku": "MUG", "quantity": 1001}]}, "items.0.quantity"),
        ({**VALID, "items": [{"sku": "MUG", "quantity": "2"}]}, "items.0.quantity"),
        ({**VALID, "items": [{"sku": "MUG", "quantity": 2.5}]}, "items.0.quantity"),
        ({**VALID, "items": [{"sku": "MUG", "quantity": True}]}, "items.0.quantity"),
        ({**VALID, "items": [{"sku": "", "quantity": 1}]}, "items.0.sku"),
        ({**VALID, "items": [{"sku": "a mug", "quantity": 1}]}, "items.0.sku"),
        ({**VALID, "items": [{"sku": 7, "quantity": 1}]}, "items.0.sku"),
        ({**VALID, "items": [{"sku": "MUG", "quantity": 1, "price": 0}]}, "items.0.price"),
        ({**VALID, "customer": {"id": "cust-ada"}}, "customer.email"),
        ({**VALID, "customer": {"id": "cust-ada", "email": "ada"}}, "customer.email"),
        ({**VALID, "customer": {"id": "a b", "email": "a@b.io"}}, "customer.id"),
        ({**VALID, "customer": "cust-ada"}, "customer"),
        ({**VALID, "coupon": "FREE"}, "coupon"),
    ],
)
def test_invalid_orders_get_422_with_the_field(
    client: FunctionClient, sink: Sink, payload: Any, field: str
) -> None:
    result = place(client, payload)
    assert result.status == 422
    problem = result.problem
    assert problem is not None
    assert problem["status"] == 422
    assert field in [error["field"] for error in problem["errors"]], problem
    assert field in problem["detail"]
    assert body(client.get("/orders")) == {"orders": []}
    client.flush_outbox()  # nothing was committed to send
    assert sink.requests == []


@pytest.mark.parametrize(
    ("data", "content_type", "status", "words"),
    [
        (b'{"customer": ', "application/json", 400, "not well-formed JSON"),
        (b"{'customer': 1}", "application/json", 400, "not well-formed JSON"),
        (b"\xff\xfe", "application/json", 400, "not well-formed JSON"),
        (b"", "application/json", 400, "empty"),
        (b"   ", "application/json", 400, "empty"),
        (orjson.dumps(VALID), "text/plain", 415, "application/json"),
        (orjson.dumps(VALID), "", 415, "application/json"),
        (b"{" + b" " * 70_000 + b"}", "application/json", 413, "limit"),
    ],
)
def test_malformed_requests_get_a_clear_4xx(
    client: FunctionClient, sink: Sink, data: bytes, content_type: str, status: int, words: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    result = client.request("POST", "/orders", data=data, headers=headers)
    assert result.status == status
    assert result.problem is not None
    assert words in result.problem["detail"]
    assert body(client.get("/orders")) == {"orders": []}
    client.flush_outbox()  # nothing was committed to send
    assert sink.requests == []


def test_an_idempotency_key_returns_the_first_order(client: FunctionClient, sink: Sink) -> None:
    first = place(client, headers={"Idempotency-Key": "k-1"})
    again = place(client, headers={"Idempotency-Key": "k-1"})
    assert first.status == 201
    assert again.status == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert body(again)["id"] == body(first)["id"]
    other = place(
        client,
        {**VALID, "items": [{"sku": "MUG", "quantity": 9}]},
        headers={"Idempotency-Key": "k-1"},
    )
    assert other.status == 422
    assert "Idempotency-Key" in other.problem["detail"]  # type: ignore[index]
    assert len(body(client.get("/orders"))["orders"]) == 1
    client.flush_outbox()
    assert len(sink.requests) == 1
    bad = place(client, headers={"Idempotency-Key": "x" * 256})
    assert bad.status == 400


def test_get_unknown_order_is_404(client: FunctionClient) -> None:
    result = client.get("/orders/nope")
    assert result.status == 404
    assert result.problem is not None
    assert "nope" in result.problem["detail"]


def test_list_orders_filters_and_validates(client: FunctionClient) -> None:
    ids = [placed(client)["id"] for _ in range(3)]
    client.send(samples.inventory_rejected(ids[0], {"MUG": 2}))
    listed = body(client.get("/orders"))["orders"]
    assert {o["id"] for o in listed} == set(ids)
    assert "history" not in listed[0]
    cancelled = body(client.get("/orders?state=CANCELLED"))["orders"]
    assert [o["id"] for o in cancelled] == [ids[0]]
    assert len(body(client.get("/orders?limit=2"))["orders"]) == 2
    for query in ("state=LOST", "limit=0", "limit=many", "limit=501", "limit=%C2%B2"):
        assert client.get(f"/orders?{query}").status == 400


# --------------------------------------------------------------------------- state machine


def test_payment_authorized_confirms_the_order(client: FunctionClient) -> None:
    order_id = placed(client)["id"]
    result = client.send(
        samples.payment_authorized(order_id, {"MUG": 2, "POSTER": 1}), event_id="pay-1"
    )
    assert result.status == 200
    reply = result.reply(OrderConfirmed)
    assert reply.order_id == order_id
    assert reply.customer.email == "ada@example.com"
    assert reply.amount_cents == 2 * 1250 + 900
    assert result.attributes["partitionkey"] == order_id
    document = state_of(client, order_id)
    assert (document["state"], document["amount_cents"]) == ("CONFIRMED", 3400)
    assert [(h["state"], h["event_id"]) for h in document["history"]] == [
        ("PENDING", None),
        ("CONFIRMED", "pay-1"),
    ]


def test_inventory_rejected_cancels_with_the_shortages(client: FunctionClient) -> None:
    order_id = placed(client)["id"]
    reply = client.send(samples.inventory_rejected(order_id, {"POSTER": 9, "NOPE": 1})).reply(
        OrderCancelled
    )
    assert reply.reason == "out_of_stock"
    assert "POSTER (requested 9, available 0)" in reply.detail
    assert "NOPE (unknown SKU)" in reply.detail
    document = state_of(client, order_id)
    assert (document["state"], document["reason"]) == ("CANCELLED", "out_of_stock")
    assert document["detail"] == reply.detail


def test_payment_declined_cancels(client: FunctionClient) -> None:
    order_id = placed(client)["id"]
    reply = client.send(samples.payment_declined(order_id, 4200)).reply(OrderCancelled)
    assert reply.reason == "payment_declined"
    assert [(i.sku, i.quantity) for i in reply.items] == [("MUG", 2), ("POSTER", 1)]
    document = state_of(client, order_id)
    assert (document["state"], document["amount_cents"]) == ("CANCELLED", 4200)


def test_final_states_never_change(client: FunctionClient) -> None:
    confirmed = placed(client)["id"]
    client.send(samples.payment_authorized(confirmed, {"MUG": 2}))
    cancelled = placed(client)["id"]
    client.send(samples.payment_declined(cancelled))
    before = {i: state_of(client, i) for i in (confirmed, cancelled)}
    late = [
        samples.payment_declined(confirmed),
        samples.inventory_rejected(confirmed, {"MUG": 1}),
        samples.payment_authorized(confirmed, {"MUG": 2}),
        samples.payment_authorized(cancelled, {"MUG": 2}),
        samples.inventory_rejected(cancelled, {"MUG": 1}),
    ]
    for event in late:
        result = client.send(event)
        assert result.status == 204, event
    assert {i: state_of(client, i) for i in (confirmed, cancelled)} == before


def test_the_same_result_twice_answers_the_same_reply(client: FunctionClient) -> None:
    order_id = placed(client)["id"]
    event = samples.payment_authorized(order_id, {"MUG": 2})
    first = client.send(event, event_id="same")
    second = client.send(event, event_id="same")
    assert (first.status, first.body, first.attributes) == (
        second.status,
        second.body,
        second.attributes,
    )
    assert len(state_of(client, order_id)["history"]) == 2


def test_results_for_unknown_orders(client: FunctionClient) -> None:
    # Nothing is held for them: acknowledged and logged.
    assert client.send(samples.inventory_rejected("ghost", {"MUG": 1})).status == 204
    assert client.send(samples.payment_declined("ghost")).status == 204
    # Money was authorized for it: a person must void it, so it is parked in the DLQ.
    result = client.send(samples.payment_authorized("ghost", {"MUG": 1}))
    assert result.status == 422
    assert "void" in result.headers["Kne-Reason"]
    assert client.get("/orders/ghost").status == 404


def test_a_chunked_order_past_the_limit_is_413_not_cut_short(
    client: FunctionClient, sink: Sink
) -> None:
    # Issue 10 row 6: valid JSON then padding, sent chunked (no Content-Length), used to be
    # read up to the limit and accepted as the order it starts with.
    padded = orjson.dumps(VALID) + b" " * (2 * 1024 * 1024)
    response = client.http.post(
        "/orders",
        input_stream=io.BytesIO(padded),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert "limit" in response.get_json()["detail"]
    assert body(client.get("/orders")) == {"orders": []}
    client.flush_outbox()  # nothing was committed to send
    assert sink.requests == []
    small = client.http.post(
        "/orders",
        input_stream=io.BytesIO(orjson.dumps(VALID) + b"  "),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert small.status_code == 201  # the same order within the limit is taken

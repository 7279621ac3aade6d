"""The whole saga in-process, without a broker: an order placed through the order API, then
every event handed to the functions whose Triggers in k8s/rendered/shop.yaml match it, replies
fed back the same way, failures retried and dead-lettered with the broker's own rules."""

from __future__ import annotations

import base64
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import pytest

from cascade.binding import binary_headers
from cascade.broker.dispatch.dead_letter import dead_letter_event
from cascade.broker.dispatch.delivery import HttpResponse, Verdict, classify
from cascade.broker.event import StoredEvent
from cascade.broker.topology import Topology, TriggerConfig, load_topology
from cascade.testing import FunctionClient
from tests.functions.conftest import FUNCTIONS, ROOT, ClientFactory, body, load, sink_events
from tests.unit.runtime.sink import Sink

URLS = {("default", name): f"http://{name}.shop.test" for name in FUNCTIONS}
SEED: dict[str, int] = dict(load("inventory").SEED)


class Router:
    """Routes events like the broker: every matching Trigger, retries, then the DLS."""

    def __init__(self, topology: Topology, clients: dict[str, FunctionClient]) -> None:
        self.topology = topology
        self.clients = clients
        self.queue: deque[StoredEvent] = deque()
        self.deliveries: list[tuple[str, int]] = []  # (trigger, status) per attempt

    def ingest(self, attributes: dict[str, str], data: bytes) -> None:
        self.queue.append(StoredEvent(attributes, data))

    def run(self, limit: int = 100) -> None:
        while self.queue:
            limit -= 1
            assert limit > 0, "the saga does not end"
            event = self.queue.popleft()
            # By name, so the order of deliveries does not depend on the manifest's order.
            for trigger in sorted(self.topology.triggers, key=lambda t: t.name):
                if trigger.filter.matches(event.attributes):
                    self.deliver(trigger, event)

    def client_at(self, url: str) -> tuple[FunctionClient, str]:
        parts = urlsplit(url)
        name = parts.hostname.removesuffix(".shop.test") if parts.hostname else ""
        return self.clients[name], parts.path or "/"

    def deliver(self, trigger: TriggerConfig, event: StoredEvent) -> None:
        client, path = self.client_at(trigger.subscriber)
        for _ in range(trigger.delivery.retry + 1):
            result = client.post(binary_headers(event.attributes), event.data, path)
            self.deliveries.append((trigger.name, result.status))
            if classify(result.status) is not Verdict.RETRYABLE:
                break
        if classify(result.status) is Verdict.SUCCESS:
            if result.attributes:  # a reply re-enters the broker
                self.ingest(result.attributes, result.body)
            return
        response = HttpResponse(result.status, dict(result.headers), result.body)
        letter = dead_letter_event(event, trigger.subscriber, response)
        assert trigger.delivery.dead_letter_sink is not None
        sink, sink_path = self.client_at(trigger.delivery.dead_letter_sink)
        parked = sink.post(binary_headers(letter.attributes), letter.data, sink_path)
        assert parked.status == 204, parked.body

    def replay(self, dead_letter_id: int) -> int:
        """What the operator's CLI does: post the original event to knativeerrordest, publish
        the reply, count the replay."""
        dlq = self.clients["dead-letter"]
        letter = body(dlq.get(f"/dead-letters/{dead_letter_id}"))
        event = letter["event"]
        data = base64.b64decode(event["data_base64"] or "")
        client, path = self.client_at(letter["dest"])
        result = client.post(binary_headers(event["attributes"]), data, path)
        if classify(result.status) is Verdict.SUCCESS and result.attributes:
            self.ingest(result.attributes, result.body)
        assert dlq.request("POST", f"/dead-letters/{dead_letter_id}/replayed").status == 200
        self.run()
        return result.status


class Shop:
    def __init__(self, make_client: ClientFactory, sink: Sink, database_url: str | None) -> None:
        self.sink = sink
        self.clients = {
            name: make_client(
                name, sink=sink.url if name == "order" else None, database_url=database_url
            )
            for name in FUNCTIONS
        }
        manifest = ROOT / "k8s" / "rendered" / "shop.yaml"
        self.router = Router(load_topology([manifest], service_urls=URLS), self.clients)
        self._seen = 0

    def place(self, lines: dict[str, int], customer: str = "cust-ada") -> str:
        payload = {
            "customer": {"id": customer, "email": f"{customer}@example.com"},
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in lines.items()],
        }
        result = self.clients["order"].request("POST", "/orders", json=payload)
        assert result.status == 201, result.body
        events = sink_events(self.sink)
        for attributes, data in events[self._seen :]:  # what the order API published
            self.router.ingest(attributes, data)
        self._seen = len(events)
        self.router.run()
        order_id: str = body(result)["id"]
        return order_id

    def get(self, name: str, path: str) -> Any:
        result = self.clients[name].get(path)
        assert result.status == 200, (name, path, result.body)
        return body(result)

    def stock(self) -> dict[str, dict[str, int]]:
        document = self.get("inventory", "/stock")
        assert document["conserved"] is True
        rows = {row["sku"]: row for row in document["skus"]}
        for row in rows.values():
            assert row["available"] + row["reserved"] + row["sold"] == row["seed"]
        return rows


@pytest.fixture
def shop(make_client: ClientFactory, sink: Sink, database_url: str | None) -> Shop:
    """The five functions, on SQLite files or all in one PostgreSQL schema."""
    return Shop(make_client, sink, database_url)


def emails(shop: Shop, order_id: str) -> list[str]:
    outbox = shop.clients["notification"]
    result = outbox.get(f"/notifications/{order_id}")
    return [body(result)["kind"]] if result.status == 200 else []


def test_an_order_in_stock_is_confirmed(shop: Shop) -> None:
    order_id = shop.place({"MUG": 2, "POSTER": 1})
    order = shop.get("order", f"/orders/{order_id}")
    assert order["state"] == "CONFIRMED"
    assert order["amount_cents"] == 2 * 1250 + 900
    assert [h["state"] for h in order["history"]] == ["PENDING", "CONFIRMED"]
    assert [name for name, _ in shop.router.deliveries] == [
        "inventory-order-created",
        "payment-inventory-reserved",
        "order-payment-authorized",
        "dead-letter-order-confirmed",
        "inventory-order-confirmed",
        "notification-order-confirmed",
    ]
    assert all(status in (200, 204) for _, status in shop.router.deliveries)
    stock = shop.stock()
    assert (stock["MUG"]["sold"], stock["MUG"]["reserved"]) == (2, 0)
    assert stock["POSTER"]["available"] == SEED["POSTER"] - 1
    assert shop.get("payment", f"/payments/{order_id}")["status"] == "AUTHORIZED"
    assert emails(shop, order_id) == ["confirmed"]
    assert shop.get("dead-letter", "/dead-letters")["dead_letters"] == []


def test_an_order_out_of_stock_is_cancelled_without_payment(shop: Shop) -> None:
    before = shop.stock()
    order_id = shop.place({"MUG": 1, "POSTER": SEED["POSTER"] + 1})
    order = shop.get("order", f"/orders/{order_id}")
    assert (order["state"], order["reason"]) == ("CANCELLED", "out_of_stock")
    assert "POSTER" in order["detail"]
    assert shop.stock() == before
    assert shop.clients["payment"].get(f"/payments/{order_id}").status == 404
    assert emails(shop, order_id) == ["cancelled"]


@pytest.mark.parametrize(
    ("lines", "customer", "why"),
    [
        ({"LAPTOP": 1}, "cust-ada", "over the limit"),
        ({"HOODIE": 2}, "cust-blocked", "blocked"),
    ],
)
def test_a_declined_order_is_cancelled_and_its_stock_released(
    shop: Shop, lines: dict[str, int], customer: str, why: str
) -> None:
    before = shop.stock()
    order_id = shop.place(lines, customer)
    order = shop.get("order", f"/orders/{order_id}")
    assert (order["state"], order["reason"]) == ("CANCELLED", "payment_declined")
    assert why in order["detail"]
    assert shop.stock() == before  # reserved, then released by the compensation
    assert shop.get("inventory", f"/reservations/{order_id}")["state"] == "RELEASED"
    assert emails(shop, order_id) == ["cancelled"]
    # Both compensations ran; the second found nothing left to release.
    assert ("inventory-payment-declined", 204) in shop.router.deliveries
    assert ("inventory-order-cancelled", 204) in shop.router.deliveries


def test_a_dead_lettered_payment_waits_for_the_operator(shop: Shop) -> None:
    payment = shop.clients["payment"]
    assert payment.request("PUT", "/faults", json={"rate": 1}).status == 200
    order_id = shop.place({"TSHIRT": 2})

    retries = [s for name, s in shop.router.deliveries if name == "payment-inventory-reserved"]
    assert retries == [503] * 6  # 1 attempt + 5 retries, then the dead-letter sink
    assert shop.get("order", f"/orders/{order_id}")["state"] == "PENDING"
    assert shop.stock()["TSHIRT"]["reserved"] == 2  # held while parked
    [letter] = shop.get("dead-letter", "/dead-letters")["dead_letters"]
    assert (letter["order_id"], letter["type"], letter["error_code"]) == (
        order_id,
        "com.example.shop.inventory.reserved",
        "503",
    )
    assert letter["dest"] == "http://payment.shop.test"

    # The operator switches the faults off and replays the parked event.
    assert payment.request("PUT", "/faults", json={"rate": 0}).status == 200
    assert shop.router.replay(letter["id"]) == 200
    order = shop.get("order", f"/orders/{order_id}")
    assert order["state"] == "CONFIRMED"
    stock = shop.stock()
    assert (stock["TSHIRT"]["reserved"], stock["TSHIRT"]["sold"]) == (0, 2)
    assert emails(shop, order_id) == ["confirmed"]
    [after] = shop.get("dead-letter", "/dead-letters")["dead_letters"]
    assert (after["replay_count"], after["order_state"]) == (1, "CONFIRMED")


def test_many_orders_keep_the_stock_invariant(shop: Shop) -> None:
    orders = [
        ({"POSTER": 2}, "cust-ada"),
        ({"POSTER": 2}, "cust-bob"),
        ({"POSTER": 2}, "cust-eve"),  # only 1 left: out of stock
        ({"POSTER": 1, "LAPTOP": 1}, "cust-ada"),  # over the limit: released
        ({"POSTER": 1}, "cust-blocked"),  # declined: released
        ({"POSTER": 1}, "cust-ada"),  # the last one
    ]
    states = []
    for lines, customer in orders:
        order_id = shop.place(lines, customer)
        states.append(shop.get("order", f"/orders/{order_id}")["state"])
    assert states == ["CONFIRMED", "CONFIRMED", "CANCELLED", "CANCELLED", "CANCELLED", "CONFIRMED"]
    stock = shop.stock()
    assert (stock["POSTER"]["available"], stock["POSTER"]["sold"]) == (0, SEED["POSTER"])
    assert stock["LAPTOP"]["available"] == SEED["LAPTOP"]

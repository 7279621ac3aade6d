"""The whole saga in process with cascade.testing.Chain: an order placed through the order API,
then every event delivered by the broker's own egress to the functions whose Triggers in
k8s/rendered/shop.yaml match it, replies fed back, failures retried (backoff recorded, not
slept) and dead-lettered with the broker's own rules."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from cascade.codec import binary_headers
from cascade.testing import Chain
from tests.functions.conftest import body
from tests.shop import ROOT, load

SEED: dict[str, int] = dict(load("inventory").SEED)
MANIFEST = ROOT / "k8s" / "rendered" / "shop.yaml"


class Shop:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.clients = chain.clients

    @property
    def deliveries(self) -> list[tuple[str, int | None]]:
        """(Trigger, status) per attempt to a subscriber."""
        return [(d.trigger, d.status) for d in self.chain.deliveries(target="subscriber")]

    def place(self, lines: dict[str, int], customer: str = "cust-ada") -> str:
        payload = {
            "customer": {"id": customer, "email": f"{customer}@example.com"},
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in lines.items()],
        }
        result = self.clients["order"].request("POST", "/orders", json=payload)
        assert result.status == 201, result.body
        self.chain.run_until_idle()
        order_id: str = body(result)["id"]
        return order_id

    def replay(self, dead_letter_id: int) -> int:
        """What the operator's CLI does: post the original event to knativeerrordest, post the
        reply to the broker ingress, count the replay."""
        dlq = self.clients["dead-letter"]
        letter = body(dlq.get(f"/dead-letters/{dead_letter_id}"))
        event = letter["event"]
        data = base64.b64decode(event["data_base64"] or "")
        client, path = self.chain.function_at(letter["dest"])
        result = client.post(binary_headers(event["attributes"]), data, path)
        if result.status < 300 and result.attributes:
            answer = self.chain.post(self.chain.ingress_url(), dict(result.headers), result.body)
            assert answer.status == 202, answer
        assert dlq.request("POST", f"/dead-letters/{dead_letter_id}/replayed").status == 200
        self.chain.run_until_idle()
        return result.status

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
def shop(database_url: str | None) -> Iterator[Shop]:
    """The five functions, on SQLite files or all in one PostgreSQL schema."""
    settings = {"database_url": database_url, "max_body_bytes": 64 * 1024, "admin_routes": True}
    with Chain.from_manifests(MANIFEST, functions_dir=ROOT / "functions", settings=settings) as c:
        yield Shop(c)


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
    assert [name for name, _ in shop.deliveries] == [
        "inventory-order-created",
        "payment-inventory-reserved",
        "order-payment-authorized",
        "dead-letter-order-confirmed",
        "inventory-order-confirmed",
        "notification-order-confirmed",
    ]
    assert all(status in (200, 204) for _, status in shop.deliveries)
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
    assert ("inventory-payment-declined", 204) in shop.deliveries
    assert ("inventory-order-cancelled", 204) in shop.deliveries


def test_a_dead_lettered_payment_waits_for_the_operator(shop: Shop) -> None:
    payment = shop.clients["payment"]
    assert payment.request("PUT", "/faults", json={"rate": 1}).status == 200
    order_id = shop.place({"TSHIRT": 2})

    retries = [s for name, s in shop.deliveries if name == "payment-inventory-reserved"]
    assert retries == [503] * 6  # 1 attempt + 5 retries, then the dead-letter sink
    assert shop.get("order", f"/orders/{order_id}")["state"] == "PENDING"
    assert shop.stock()["TSHIRT"]["reserved"] == 2  # held while parked
    [letter] = shop.get("dead-letter", "/dead-letters")["dead_letters"]
    assert (letter["order_id"], letter["type"], letter["error_code"]) == (
        order_id,
        "com.example.shop.inventory.reserved",
        "503",
    )
    assert letter["dest"] == "http://payment.default.svc.cluster.local"
    # The Trigger's delivery (retry 5, exponential, PT0.2S): the waits the broker would make,
    # recorded instead of slept.
    attempts = shop.chain.deliveries("payment-inventory-reserved", target="subscriber")
    assert [d.backoff for d in attempts] == pytest.approx([0, 0.4, 0.8, 1.6, 3.2, 6.4])
    [parked] = shop.chain.dead_letters("payment-inventory-reserved")
    assert parked.message.attributes["knativeerrorcode"] == "503"

    # The operator switches the faults off and replays the parked event.
    assert payment.request("PUT", "/faults", json={"rate": 0}).status == 200
    assert shop.replay(letter["id"]) == 200
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

"""Concurrent clients placing orders through the order API, across restarts of everything.

Each order has its own Idempotency-Key and is posted until the API answers 200/201 (a 503
while draining, a refused connection while the order function restarts: try again), so an
order is placed exactly once however often the POST is repeated. ``accepted`` maps each
order id the API returned to the kind of order it is.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["KINDS", "Clients", "OrderSpec", "in_stock_orders", "make_orders", "stock_for"]

# kind -> the final state and reason an order of that kind must reach
KINDS = {
    "in_stock": ("CONFIRMED", None),
    "out_of_stock": ("CANCELLED", "out_of_stock"),
    "declined": ("CANCELLED", "payment_declined"),
}
IN_STOCK_SKUS = ("STICKER", "MUG", "TSHIRT", "HOODIE", "POSTER")
_POST_TIMEOUT_S = 10.0
_GIVE_UP_S = 300.0


@dataclass(frozen=True)
class OrderSpec:
    key: str
    kind: str
    customer: str
    items: tuple[tuple[str, int], ...]


def make_orders(count: int, rng: random.Random) -> list[OrderSpec]:
    """70% in stock, 15% out of stock (VINYL has none, or an unknown SKU), 15% declined."""
    orders = []
    for n in range(count):
        roll = rng.random()
        key = str(uuid.UUID(int=rng.getrandbits(128)))
        if roll < 0.70:
            orders.append(_in_stock(key, n, rng))
        elif roll < 0.85:
            missing = "VINYL" if rng.random() < 0.5 else "NO-SUCH-SKU"
            orders.append(OrderSpec(key, "out_of_stock", f"cust-{n % 97}", ((missing, 1),)))
        else:
            orders.append(OrderSpec(key, "declined", "cust-blocked", (("MUG", 1),)))
    return orders


def in_stock_orders(count: int, rng: random.Random) -> list[OrderSpec]:
    """Only orders of in-stock SKUs by customers who pay: with :func:`stock_for`'s seed every
    one of them is CONFIRMED (the whole saga, the longest chain of the shop)."""
    return [_in_stock(str(uuid.UUID(int=rng.getrandbits(128))), n, rng) for n in range(count)]


def _in_stock(key: str, n: int, rng: random.Random) -> OrderSpec:
    skus = rng.sample(IN_STOCK_SKUS, rng.randint(1, 2))
    items = tuple((sku, rng.randint(1, 3)) for sku in skus)
    return OrderSpec(key, "in_stock", f"cust-{n % 97}", items)


def stock_for(orders: list[OrderSpec]) -> dict[str, int]:
    """Seed stock: enough of every in-stock SKU for all orders, none of VINYL, so an order's
    kind alone decides its final state."""
    wanted = dict.fromkeys(IN_STOCK_SKUS, 0)
    for order in orders:
        if order.kind != "out_of_stock":
            for sku, quantity in order.items:
                wanted[sku] += quantity
    return {**{sku: count + 10 for sku, count in wanted.items()}, "LAPTOP": 3, "VINYL": 0}


class Clients:
    """``clients`` threads placing ``orders`` against ``order_url()`` (read per attempt)."""

    def __init__(self, orders: list[OrderSpec], clients: int, order_url: Callable[[], str]):
        self.orders = orders
        self.order_url = order_url
        self.accepted: dict[str, OrderSpec] = {}
        self.failures: list[str] = []
        self.posts = 0
        self._next = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"client-{n}", daemon=True)
            for n in range(clients)
        ]

    @property
    def placed(self) -> int:
        with self._lock:
            return len(self.accepted)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _take(self) -> OrderSpec | None:
        with self._lock:
            if self._next >= len(self.orders):
                return None
            self._next += 1
            return self.orders[self._next - 1]

    def _work(self) -> None:
        while (spec := self._take()) is not None:
            order_id = self._place(spec)
            with self._lock:
                if order_id is None:
                    self.failures.append(spec.key)
                else:
                    self.accepted[order_id] = spec

    def _place(self, spec: OrderSpec) -> str | None:
        body = json.dumps(
            {
                "customer": {"id": spec.customer, "email": f"{spec.customer}@example.com"},
                "items": [{"sku": sku, "quantity": q} for sku, q in spec.items],
            }
        ).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": spec.key}
        deadline = time.monotonic() + _GIVE_UP_S
        while time.monotonic() < deadline:
            with self._lock:
                self.posts += 1
            try:
                status, answer = _post(self.order_url() + "/orders", body, headers)
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)  # the order function is restarting
                continue
            if status in (200, 201):
                return str(json.loads(answer)["id"])
            time.sleep(0.2)  # 503: draining or its store is busy; the same key again
        return None


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    connection = http.client.HTTPConnection(host, int(port), timeout=_POST_TIMEOUT_S)
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()

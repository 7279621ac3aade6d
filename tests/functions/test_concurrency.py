"""Concurrent deliveries, as several gunicorn workers would make them, on SQLite and PostgreSQL:
the last units of stock, one email per order, one order per Idempotency-Key."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cascade import Event
from cascade.codec import binary_headers
from cascade.events import bound_type
from cascade.testing import FunctionClient
from functions.shop import samples
from tests.functions.conftest import ClientFactory, body
from tests.shop import load

SEED: dict[str, int] = dict(load("inventory").SEED)


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` on as many threads, released together."""
    barrier = threading.Barrier(len(calls), timeout=30)

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result(timeout=60) for f in [pool.submit(run, c) for c in calls]]


def deliver(client: FunctionClient, event: Event, event_id: str) -> Callable[[], int]:
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/concurrency",
        "type": bound_type(type(event)),
        "datacontenttype": "application/json",
    }

    def call() -> int:
        http = client.app.test_client()  # one per thread
        response = http.post("/", headers=binary_headers(attributes), data=event.to_json_bytes())
        try:
            return response.status_code
        finally:
            response.close()

    return call


def test_the_last_units_go_to_as_many_orders_as_they_cover(
    make_client: ClientFactory, database_url: str | None
) -> None:
    client = make_client("inventory", database_url=database_url)
    assert client.get("/stock").status == 200  # seeded before the rush
    orders = SEED["POSTER"] + 3
    statuses = at_once(
        [
            deliver(client, samples.order_created(f"c-{n}", {"POSTER": 1}), f"e-{n}")
            for n in range(orders)
        ]
    )
    assert set(statuses) == {200}
    states = [body(client.get(f"/reservations/c-{n}"))["state"] for n in range(orders)]
    assert states.count("RESERVED") == SEED["POSTER"]
    assert states.count("REJECTED") == 3
    poster = body(client.get("/stock/POSTER"))
    assert (poster["available"], poster["reserved"]) == (0, SEED["POSTER"])


def test_concurrent_news_of_one_order_send_one_email(
    make_client: ClientFactory, database_url: str | None, tmp_path: Path
) -> None:
    client = make_client("notification", database_url=database_url)
    event = samples.order_confirmed("c-mail", {"MUG": 1})
    statuses = at_once([deliver(client, event, f"mail-{n}") for n in range(4)])
    # Each is acknowledged, or told to retry while another delivery holds the order.
    assert 204 in statuses
    assert set(statuses) <= {204, 503}
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["c-mail.eml"]
    assert body(client.get("/notifications/c-mail"))["kind"] == "confirmed"


def test_concurrent_posts_with_one_idempotency_key_place_one_order(
    make_client: ClientFactory, database_url: str | None
) -> None:
    client = make_client("order", database_url=database_url)
    payload = {
        "customer": {"id": "cust-ada", "email": "ada@example.com"},
        "items": [{"sku": "MUG", "quantity": 1}],
    }

    def post() -> tuple[int, str]:
        http = client.app.test_client()
        response = http.post("/orders", json=payload, headers={"Idempotency-Key": "same"})
        try:
            return response.status_code, response.get_json()["id"]
        finally:
            response.close()

    answers = at_once([post for _ in range(4)])
    assert sorted(status for status, _ in answers) == [200, 200, 200, 201]
    assert len({order_id for _, order_id in answers}) == 1
    assert len(body(client.get("/orders"))["orders"]) == 1
    assert client.runtime.outbox.pending() == 1  # one order.created: the losers wrote none

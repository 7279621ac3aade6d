"""Redelivery under `cascade run`: the same order.created (same source and id) arriving again,
several times at once, through the broker (`cascade send`) and straight at inventory, changes
stock once and sends one email."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    ShopRun,
    activity,
    broker_lag,
    call,
    check_stock,
    get_json,
    place_order,
    run_cli,
    running_shop,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ORDER_CREATED = "com.example.shop.order.created"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopRun]:
    # Two workers per function, as on a cluster, so concurrent copies meet in two processes
    # (`cascade run` starts one unless the environment says otherwise).
    yield from running_shop(tmp_path_factory.mktemp("redelivery"), env={"CASCADE_WORKERS": "2"})


def deliveries(shop: ShopRun, trigger: str, event_id: str | None = None, order: str = "") -> int:
    return sum(
        1
        for entry in activity(shop.broker)
        if entry["trigger"] == trigger
        and entry["outcome"] == "delivered"
        and (event_id is None or entry["id"] == event_id)
        and (not order or entry["partitionkey"] == order)
    )


def emails_logged(shop: ShopRun, order_id: str) -> int:
    count = 0
    for line in (shop.data_dir / "logs" / "notification.log").read_text().splitlines():
        if line.startswith("{"):
            message = json.loads(line).get("message", "")
            count += message.startswith("emailed ") and f" about order {order_id} " in message
    return count


def send_copies(
    shop: ShopRun,
    attributes: dict[str, str],
    data: dict[str, Any],
    through_broker: int,
    direct: int,
) -> tuple[list[int], list[dict[str, str]]]:
    """Post copies at once: ``through_broker`` with `cascade send`, ``direct`` to inventory."""
    body = json.dumps(data)

    def via_cli() -> int:
        result = run_cli(
            "send",
            "--url",
            shop.ingress,
            "--type",
            attributes["type"],
            "--source",
            attributes["source"],
            "--id",
            attributes["id"],
            "--partitionkey",
            data["order_id"],
            "--subject",
            data["order_id"],
            "--data",
            body,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "HTTP 202" in result.stdout
        return result.returncode

    def direct_post() -> dict[str, str]:
        headers = {f"ce-{k}": v for k, v in attributes.items()}
        headers["Content-Type"] = "application/json"
        answer = call("POST", shop.url("inventory"), body.encode(), headers)
        assert answer.status == 200, answer.body
        return answer.headers

    with ThreadPoolExecutor(through_broker + direct) as pool:
        cli = [pool.submit(via_cli) for _ in range(through_broker)]
        posts = [pool.submit(direct_post) for _ in range(direct)]
        return [f.result() for f in cli], [f.result() for f in posts]


def test_a_redelivered_order_created_changes_nothing_and_sends_no_second_email(
    shop: ShopRun,
) -> None:
    order_url = shop.url("order")
    order_id = place_order(order_url, [("MUG", 3)], customer="cust-dup")
    wait_until(
        lambda: get_json(f"{order_url}/orders/{order_id}")["state"] == "CONFIRMED",
        60,
        "the order to be confirmed",
    )
    wait_until(lambda: emails_logged(shop, order_id) == 1, 30, "its email")
    wait_until(lambda: broker_lag(shop.broker) == 0, 30, "the broker to be idle")
    before = check_stock(shop.url("inventory"))
    order_before = get_json(f"{order_url}/orders/{order_id}")
    created = next(
        e
        for e in activity(shop.broker)
        if e["type"] == ORDER_CREATED and e["partitionkey"] == order_id
    )
    attributes = {
        "specversion": "1.0",
        "id": created["id"],
        "source": created["source"],
        "type": ORDER_CREATED,
        "partitionkey": order_id,
        "subject": order_id,
    }
    data = {
        "order_id": order_id,
        "customer": order_before["customer"],
        "items": order_before["items"],
        "placed_at": order_before["created_at"],
    }

    _, direct = send_copies(shop, attributes, data, through_broker=2, direct=2)

    # The direct copies got inventory's stored reply: the very same event both times.
    assert len({headers["ce-id"] for headers in direct}) == 1
    assert {headers["ce-type"] for headers in direct} == {"com.example.shop.inventory.reserved"}
    # The broker delivered its two copies, and their (stored) replies went down the chain.
    wait_until(
        lambda: deliveries(shop, "inventory-order-created", created["id"]) == 3,
        60,
        "both copies to be delivered",
    )
    wait_until(
        lambda: deliveries(shop, "notification-order-confirmed", order=order_id) == 3,
        60,
        "the duplicate chains to reach notification",
    )
    wait_until(lambda: broker_lag(shop.broker) == 0, 30, "the broker to be idle")
    assert check_stock(shop.url("inventory")) == before
    order_after = get_json(f"{order_url}/orders/{order_id}")
    assert order_after["state"] == "CONFIRMED"
    assert order_after["history"] == order_before["history"]
    assert emails_logged(shop, order_id) == 1
    outbox = Path(shop.env["NOTIFICATION_OUTBOX"])
    assert [p.name for p in outbox.glob(f"{order_id}*")] == [f"{order_id}.eml"]


def test_concurrent_copies_of_a_new_order_created_reserve_once(shop: ShopRun) -> None:
    order_id = f"dup-{uuid.uuid4().hex[:12]}"
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/e2e/redelivery",
        "type": ORDER_CREATED,
        "partitionkey": order_id,
        "subject": order_id,
    }
    data = {
        "order_id": order_id,
        "customer": {"id": "cust-dup", "email": "dup@example.com"},
        "items": [{"sku": "STICKER", "quantity": 5}],
        "placed_at": "2026-01-01T00:00:00Z",
    }
    inventory = shop.url("inventory")
    assert len(shop.workers("inventory")) == 2  # the environment's CASCADE_WORKERS won
    wait_until(lambda: broker_lag(shop.broker) == 0, 30, "the broker to be idle")
    before = check_stock(inventory)["STICKER"]

    _, direct = send_copies(shop, attributes, data, through_broker=3, direct=3)

    assert len({headers["ce-id"] for headers in direct}) == 1
    wait_until(
        lambda: deliveries(shop, "inventory-order-created", attributes["id"]) == 3,
        60,
        "the broker's three copies to be delivered",
    )
    wait_until(lambda: broker_lag(shop.broker) == 0, 60, "the chain to settle")
    reservation = get_json(f"{inventory}/reservations/{order_id}")
    assert reservation["state"] == "RESERVED"
    assert reservation["lines"] == [{"sku": "STICKER", "quantity": 5}]
    after = check_stock(inventory)["STICKER"]
    # Reserved once: the order service knows no such order, so it is never sold or released.
    assert after["reserved"] - before["reserved"] == 5
    assert after["available"] - before["available"] == -5
    assert after["sold"] == before["sold"]

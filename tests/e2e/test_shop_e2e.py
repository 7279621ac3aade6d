"""The whole shop under `cascade run`: 200 orders, payment faults, the dead-letter queue, replay.

One `cascade run` (free ports, a temporary data directory, the shop's manifests with retries
backing off from 0.05 s instead of 0.2 s) takes, in three phases:

- A: orders that confirm, orders out of stock (VINYL has none, an unknown SKU), orders a blocked
  customer's payment declines; all must reach the final state their kind dictates;
- B: in-stock orders while payment fails 80% of its calls (503): retried, some dead-lettered;
- C: in-stock orders while payment hangs past its Trigger's 2 s timeout on 60% of its calls.

Then faults go off, `cascade dlq replay --all` replays what was parked, and every order must be
final, every SKU conserved with nothing left reserved, each confirmed order's units sold, one
email per order, and every dead letter explained.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.harness import (
    FINAL,
    PlacedOrder,
    ShopRun,
    activity,
    broker_lag,
    call,
    check_stock,
    get_json,
    orders_by_state,
    place_order,
    run_cli,
    running_shop,
    send_json,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

EXPECTED_STATE = {"confirmed": "CONFIRMED", "out_of_stock": "CANCELLED", "declined": "CANCELLED"}
EXPECTED_REASON = {"out_of_stock": "out_of_stock", "declined": "payment_declined"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopRun]:
    yield from running_shop(tmp_path_factory.mktemp("shop"))


def phase_a_orders() -> list[tuple[str, tuple[tuple[str, int], ...], str]]:
    """(kind, items, customer); in-stock totals stay within the seed, so kinds are certain."""
    rng = random.Random(20261126)
    orders: list[tuple[str, tuple[tuple[str, int], ...], str]] = []
    for _ in range(75):
        orders.append(("confirmed", (("STICKER", rng.randint(1, 3)),), "cust-e2e"))
    for _ in range(15):
        orders.append(("confirmed", (("HOODIE", 1), ("MUG", rng.randint(1, 2))), "cust-e2e"))
    for n in range(25):
        sku = "VINYL" if n % 2 else "NO-SUCH-SKU"
        orders.append(("out_of_stock", ((sku, 1), ("STICKER", 1)), "cust-e2e"))
    for _ in range(25):
        orders.append(("declined", (("MUG", 1),), "cust-blocked"))
    rng.shuffle(orders)
    return orders


def place_all(
    order_url: str, specs: list[tuple[str, tuple[tuple[str, int], ...], str]]
) -> list[PlacedOrder]:
    def place(spec: tuple[str, tuple[tuple[str, int], ...], str]) -> PlacedOrder:
        kind, items, customer = spec
        return PlacedOrder(place_order(order_url, items, customer=customer), kind, items)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(place, specs))


def wait_final(run: ShopRun, ids: set[str], timeout: float) -> dict[str, str]:
    order_url = run.url("order")

    def all_final() -> dict[str, str] | None:
        states = orders_by_state(order_url)
        return states if all(states.get(i) in FINAL for i in ids) else None

    return wait_until(all_final, timeout, f"{len(ids)} orders to be final", interval=1.0)


def parked_or_final(run: ShopRun, ids: set[str], timeout: float) -> None:
    """Wait until each order is final or has a dead letter (it waits for a replay)."""
    order_url, dead_letter = run.url("order"), run.url("dead-letter")

    def settled() -> bool:
        states = orders_by_state(order_url)
        parked = {
            entry["order_id"]
            for entry in get_json(f"{dead_letter}/dead-letters?limit=500")["dead_letters"]
        }
        return all(states.get(i) in FINAL or i in parked for i in ids)

    wait_until(settled, timeout, "orders to be final or dead-lettered", interval=1.0)


def test_cascade_run_starts_one_worker_per_function(shop: ShopRun) -> None:
    names = sorted(shop.running_state()["functions"])
    assert names == ["dead-letter", "inventory", "notification", "order", "payment"]
    # The manifests ask for two (a pod's size); on one machine each function gets one.
    assert {name: len(shop.workers(name)) for name in names} == dict.fromkeys(names, 1)


def test_two_hundred_orders_with_faults_end_final_conserved_and_notified(shop: ShopRun) -> None:
    order_url, payment = shop.url("order"), shop.url("payment")

    # A: no faults; every kind ends in the state it must.
    placed = place_all(order_url, phase_a_orders())
    states = wait_final(shop, {o.id for o in placed}, timeout=120)
    for order in placed:
        assert states[order.id] == EXPECTED_STATE[order.kind], order
    for order in placed[:: len(placed) // 10]:  # spot-check reasons and history
        document = get_json(f"{order_url}/orders/{order.id}")
        assert document["reason"] == EXPECTED_REASON.get(order.kind), document

    # B: payment answers 503 on 80% of its calls: retries, and some events dead-lettered
    # (an event fails all 6 attempts with probability 0.8^6 = 0.26).
    answer = send_json("PUT", f"{payment}/faults", {"rate": 0.8, "mode": "error", "seed": 7})
    assert answer.status == 200, answer.body
    faulty = place_all(order_url, [("confirmed", (("STICKER", 1),), "cust-b")] * 48)
    parked_or_final(shop, {o.id for o in faulty}, timeout=120)

    # C: payment hangs 2.5 s (past its Trigger's 2 s timeout) on 60% of its calls.
    answer = send_json(
        "PUT", f"{payment}/faults", {"rate": 0.6, "mode": "hang", "hang_seconds": 2.5, "seed": 3}
    )
    assert answer.status == 200, answer.body
    hung = place_all(order_url, [("confirmed", (("STICKER", 1),), "cust-c")] * 12)
    parked_or_final(shop, {o.id for o in hung}, timeout=150)
    feed = [e for e in activity(shop.broker) if e["trigger"] == "payment-inventory-reserved"]
    assert any(e["outcome"] == "retried" and e["status"] == 503 for e in feed)
    assert any(e["outcome"] == "retried" and str(e["error"]).startswith("timed out") for e in feed)

    # Faults off; once the broker has nothing left in flight, replay what was parked.
    assert call("DELETE", f"{payment}/faults").status == 200
    wait_until(lambda: broker_lag(shop.broker) == 0, 60, "the broker to finish its deliveries")
    dead = get_json(f"{shop.url('dead-letter')}/dead-letters?limit=500")["dead_letters"]
    assert dead, "80% payment failures over 48 orders should dead-letter some events"
    replay = run_cli("dlq", "--data-dir", str(shop.data_dir), "replay", "--all")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"{len(dead)} replayed, 0 failed" in replay.stdout

    everything = placed + faulty + hung
    assert len(everything) >= 200
    states = wait_final(shop, {o.id for o in everything}, timeout=120)
    for order in everything:
        assert states[order.id] == EXPECTED_STATE[order.kind], order
    assert not [i for i, s in states.items() if s not in FINAL], "an order is stuck"
    wait_until(lambda: broker_lag(shop.broker) == 0, 60, "the last deliveries")

    check_inventory(shop, everything)
    check_emails(shop, {o.id for o in everything}, states)
    check_dead_letters_explained(shop)


def check_inventory(shop: ShopRun, orders: list[PlacedOrder]) -> None:
    """Conserved, nothing reserved, and sold = the units of the confirmed orders."""

    def settled() -> dict[str, dict[str, int]] | None:
        rows = check_stock(shop.url("inventory"))
        return rows if all(row["reserved"] == 0 for row in rows.values()) else None

    rows = wait_until(settled, 60, "every reservation to be sold or released")
    sold: Counter[str] = Counter()
    for order in orders:
        if order.kind == "confirmed":
            for sku, quantity in order.items:
                sold[sku] += quantity
    for sku, row in rows.items():
        assert row["sold"] == sold[sku], (sku, row, sold[sku])


def check_emails(shop: ShopRun, ids: set[str], states: dict[str, str]) -> None:
    outbox = Path(shop.env["NOTIFICATION_OUTBOX"])

    def all_sent() -> set[str] | None:
        files = {path.stem for path in outbox.glob("*.eml")}
        return files if files >= ids else None

    files = wait_until(all_sent, 60, "one email per order")
    assert files == ids
    # Exactly one send per order: the notification log names each order once.
    sent: Counter[str] = Counter()
    for line in (shop.data_dir / "logs" / "notification.log").read_text().splitlines():
        if line.startswith("{"):
            message = json.loads(line).get("message", "")
            if message.startswith("emailed "):
                sent[message.split(" about order ")[1].split(" ")[0]] += 1
    assert set(sent) == ids
    assert set(sent.values()) == {1}, [i for i, n in sent.items() if n != 1]
    subjects = {"CONFIRMED": "is confirmed", "CANCELLED": "was cancelled"}
    for order_id in sorted(ids):
        text = (outbox / f"{order_id}.eml").read_text()
        assert f"Subject: Your order {order_id} {subjects[states[order_id]]}" in text


def check_dead_letters_explained(shop: ShopRun) -> None:
    """Each dead letter names where it failed, and why: a status, a reason, or (for a
    transport error, which carries neither) the broker's activity feed says what happened."""
    entries = get_json(f"{shop.url('dead-letter')}/dead-letters?limit=500")["dead_letters"]
    transport_errors = {
        entry["id"]
        for entry in activity(shop.broker)
        if entry["outcome"] == "dead-lettered" and entry["error"]
    }
    for entry in entries:
        assert entry["dest"], entry
        assert entry["error_code"] or entry["reason"] or entry["event_id"] in transport_errors, (
            entry
        )
        assert entry["replay_count"] >= 1, entry  # replayed once, by the test above

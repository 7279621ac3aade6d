"""Orders placed without pause across restarts, and what must hold once they are final."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from functools import partial
from pathlib import Path

from tests.e2e.harness import (
    FINAL,
    ShopRun,
    broker_lag,
    call,
    check_stock,
    get_json,
    orders_by_state,
    wait_until,
)

GUNICORN_WORKERS = 2  # cascade serve's default per function


class Placer(threading.Thread):
    """Places ``orders`` orders one after another, following the order API across restarts;
    every tenth is out of stock. ``reached(n)`` is set once ``n`` orders are placed."""

    def __init__(self, run: ShopRun, orders: int, marks: tuple[int, ...]) -> None:
        super().__init__(name="placer", daemon=True)
        self.run_ = run
        self.keys = [str(uuid.uuid4()) for _ in range(orders)]
        self.placed: dict[str, tuple[str, str]] = {}  # key -> (order id, expected state)
        self.marks = {mark: threading.Event() for mark in marks}
        self.failure: BaseException | None = None

    def reached(self, mark: int, timeout: float) -> bool:
        return self.marks[mark].wait(timeout) and self.failure is None

    def run(self) -> None:
        try:
            for n, key in enumerate(self.keys):
                out_of_stock = n % 10 == 0
                items = [{"sku": "VINYL" if out_of_stock else "STICKER", "quantity": 1}]
                order_id = wait_until(partial(self._post, key, items), 180, f"order {n}", 0.2)
                self.placed[key] = (order_id, "CANCELLED" if out_of_stock else "CONFIRMED")
                if len(self.placed) in self.marks:
                    self.marks[len(self.placed)].set()
        except BaseException as exc:  # reported by the test
            self.failure = exc
            for event in self.marks.values():
                event.set()

    def _post(self, key: str, items: list[dict[str, object]]) -> str | None:
        body = {"customer": {"id": "cust-restart", "email": "r@example.com"}, "items": items}
        answer = call(
            "POST",
            f"{self.run_.url('order')}/orders",  # re-read: the port changes with each run
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Idempotency-Key": key},
            timeout=10,
        )
        if answer.status in (200, 201):
            return str(answer.json()["id"])
        assert answer.status == 503, answer.body  # draining: try again
        return None


def settle(run: ShopRun, placer: Placer, orders: int, *, crash: bool) -> None:
    """Once ``placer`` is done: every order final in its expected state, none lost or twice,
    the broker caught up, and :func:`check_outcome`."""
    placer.join(240)
    assert not placer.is_alive(), "placing the orders did not finish"
    assert placer.failure is None, placer.failure
    expected = dict(placer.placed.values())
    assert len(expected) == orders

    order_url = run.url("order")

    def all_final() -> dict[str, str] | None:
        states = orders_by_state(order_url)  # also wakes the order's outbox relay
        return states if all(states.get(i) in FINAL for i in expected) else None

    states = wait_until(all_final, 120, "every order to be final", interval=1.0)
    assert set(states) == set(expected), "an order was lost or placed twice"
    assert states == expected
    wait_until(lambda: broker_lag(run.broker) == 0, 60, "the broker to finish")
    check_outcome(run, expected, crash=crash)


def check_outcome(run: ShopRun, expected: dict[str, str], *, crash: bool) -> None:
    def settled() -> dict[str, dict[str, int]] | None:
        rows = check_stock(run.url("inventory"))
        return rows if all(row["reserved"] == 0 for row in rows.values()) else None

    rows = wait_until(settled, 60, "every reservation to be sold or released")
    confirmed = sum(1 for state in expected.values() if state == "CONFIRMED")
    assert rows["STICKER"]["sold"] == confirmed
    assert rows["VINYL"]["sold"] == 0

    outbox = Path(run.env["NOTIFICATION_OUTBOX"])
    wait_until(
        lambda: {p.stem for p in outbox.glob("*.eml")} == set(expected), 60, "one email per order"
    )
    for order_id in expected:
        assert get_json(f"{run.url('notification')}/notifications/{order_id}")["sent_at"]
    sends: Counter[str] = Counter()
    for log in (run.data_dir / "logs").glob("notification.log"):
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                message = json.loads(line).get("message", "")
                if message.startswith("emailed "):
                    sends[message.split(" about order ")[1].split(" ")[0]] += 1
    assert set(sends) == set(expected)
    twice = [order for order, count in sends.items() if count > 1]
    if crash:
        # The one window left: killed after the message left, before the commit; the copy
        # carries the same Message-ID and replaced the file. At most one per worker.
        assert max(sends.values()) <= 2
        assert len(twice) <= GUNICORN_WORKERS
    else:
        assert twice == []

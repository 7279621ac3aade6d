"""The console of a real ``cascade run`` of the shop, in Chromium, as a user would use it.

Place an order through the order API and watch it in the live stream, on the graph and on its
chain page with its trace; turn payment faults on, let a second order's payment be
dead-lettered, replay it from its page (dry run, then confirm) and see the order CONFIRMED.

Screenshots go to ``$CASCADE_CONSOLE_SCREENSHOTS`` when set (docs/console.md shows them:
``CASCADE_CONSOLE_SCREENSHOTS=docs/images pytest tests/console/test_console_shop.py``), else
to the test's temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import ShopRun, get_json, place_order, running_shop, send_json, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[ShopRun]:
    yield from running_shop(tmp_path)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CASCADE_CONSOLE_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def order_state(shop: ShopRun, order_id: str) -> str:
    return str(get_json(f"{shop.url('order')}/orders/{order_id}")["state"])


def test_follow_an_order_and_replay_its_dead_letter_from_the_browser(
    shop: ShopRun, chromium: Any, shots: Path
) -> None:
    state = shop.state()
    assert state is not None
    console = state["console"]["url"]
    endpoints = shop.output().split("ENDPOINT", 1)[1].splitlines()
    assert endpoints[1].split() == ["console", console, *endpoints[1].split()[2:]]

    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        # 1. The live stream shows an order's deliveries as they happen.
        page.goto(f"{console}/live")
        expect(page.locator("#stream-state")).to_have_text("live")
        order_id = place_order(shop.url("order"), [("MUG", 1)], customer="ada")
        wait_until(lambda: order_state(shop, order_id) == "CONFIRMED", 60, "order confirmed")
        rows = page.locator(f"#deliveries tr:has(td.order[title='{order_id}'])")
        expect(rows.filter(has_text="order.confirmed").first).to_be_visible(timeout=20_000)
        expect(rows.filter(has_text="order.created")).to_have_count(1)
        first = rows.filter(has_text="order.created").locator("td")
        assert first.nth(1).inner_text() == "delivered"
        assert first.nth(3).inner_text() == order_id[:8]
        assert first.nth(4).inner_text() == "inventory-order-created"
        assert first.nth(5).inner_text() == "200"
        page.screenshot(path=str(shots / "console-live.png"))

        # 2. Its chain page: every event with its attempts, and its trace's waterfall.
        page.goto(f"{console}/chains/{order_id}")
        expect(
            page.locator("li.event[data-type='com.example.shop.order.confirmed']")
        ).to_have_count(1, timeout=20_000)
        for kind in ("order.created", "inventory.reserved", "payment.authorized"):
            event = page.locator(f"li.event[data-type='com.example.shop.{kind}']")
            expect(event.locator("tr.attempt").first).to_be_visible()
        trace = page.locator("section.trace").first
        expect(trace.locator("tr.span").first).to_be_visible()
        assert trace.locator("tr.span").count() >= 10
        assert "POST /orders" in trace.locator("tr.span").first.inner_text()

        # 3. The search box finds the chain by the 8 characters the terminal shows.
        page.goto(f"{console}/")
        page.fill("#search input", order_id[:8])
        page.press("#search input", "Enter")
        page.wait_for_url(f"**/chains/{order_id}")

        # 4. Payment faults on: the next order's payment is dead-lettered.
        payment = shop.url("payment")
        assert send_json("PUT", f"{payment}/faults", {"rate": 1, "mode": "error"}).status == 200
        try:
            failed_id = place_order(shop.url("order"), [("MUG", 1)], customer="bob")
            dead = wait_until(
                lambda: get_json(f"{shop.url('dead-letter')}/dead-letters?order_id={failed_id}")[
                    "dead_letters"
                ],
                60,
                "the payment to be dead-lettered",
            )
        finally:
            assert send_json("DELETE", f"{payment}/faults", {}).status == 200
        assert order_state(shop, failed_id) == "PENDING"

        # 5. The graph shows it: a failed delivery on payment's Trigger.
        page.goto(f"{console}/")
        failed = page.locator(
            "#trigger-stats tr[data-trigger='default/payment-inventory-reserved'] "
            "td[data-stat=failed]"
        )
        expect(failed).to_have_text("1", timeout=10_000)
        expect(page.locator("path.edge.dead-letter.used")).to_have_count(1)
        page.screenshot(path=str(shots / "console-topology.png"), full_page=True)

        # 6. Replay it from its page: a dry run first, then the confirmation.
        page.goto(f"{console}/dead-letters")
        listed = page.locator(f"#dead-letter-table tr[data-id='{dead[0]['id']}']")
        expect(listed.locator("td").nth(4)).to_have_text("payment")  # failed at, by name
        page.click(f"#dead-letter-table tr[data-id='{dead[0]['id']}'] a")
        page.wait_for_url(f"**/dead-letters/{dead[0]['id']}")
        expect(page.locator("dl.facts")).to_contain_text("503")
        page.click("#dry-run")
        expect(page.locator("#replay-out pre")).to_contain_text("would POST")
        expect(page.locator("#replay-out pre")).to_contain_text("ce-cascadereplays: 1")
        assert order_state(shop, failed_id) == "PENDING"  # a dry run sends nothing
        page.screenshot(path=str(shots / "console-replay.png"))
        page.click("#confirm-replay")
        expect(page.locator("#replay-result")).to_have_text("Replayed", timeout=30_000)
        wait_until(lambda: order_state(shop, failed_id) == "CONFIRMED", 60, "replayed order")

        # 7. Its chain shows the dead letter, the replay and the confirmation.
        page.click("#replay-chain")
        expect(
            page.locator("li.event[data-type='com.example.shop.order.confirmed']")
        ).to_have_count(1, timeout=20_000)
        expect(page.locator("#dead-letter-table tbody tr")).to_contain_text("1")  # replays
        expect(page.locator("ul.replays li").first).to_be_visible(timeout=20_000)
        # The replay's reply re-entered the broker: its deliveries are on the chain too.
        replied = page.locator("li.event[data-type='com.example.shop.payment.authorized']")
        expect(replied).to_contain_text("published by cascade-cli")
        expect(replied.locator("tr.attempt").first).to_be_visible(timeout=20_000)
        page.screenshot(path=str(shots / "console-chain-replayed.png"), full_page=True)
        assert problems == []
    finally:
        context.close()

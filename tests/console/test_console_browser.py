"""The console's pages in Chromium, fed hostile event text: it is shown, escaped, never run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from cascade.console.server import ConsoleServer
from tests.console.fakes import HOSTILE_KEY, HOSTILE_TYPE, TRACE_ID, Upstreams, activity_entry


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []  # script errors, dialogs: none may happen
    page.on("pageerror", lambda error: page.problems.append(f"page error: {error}"))
    page.on(
        "dialog",
        lambda dialog: (page.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()),
    )
    page.on(
        "console",
        lambda message: message.type == "error" and page.problems.append(message.text),
    )
    try:
        yield page
    finally:
        context.close()


def assert_nothing_ran(page: Any) -> None:
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.scripts.length") == 1  # the console's own module only
    assert page.locator("main script, main img, main b, main i").count() == 0
    assert page.problems == []


def test_live_deliveries_show_hostile_text_as_text(page: Any, console: ConsoleServer) -> None:
    page.goto(f"{console.url}/live")
    page.wait_for_selector("#deliveries tr >> nth=1")
    row = page.locator("#deliveries tr").nth(1)
    shown = row.locator("td.type").inner_text()
    assert "</script>.evil" in shown
    assert "\\u{0007}" in shown  # a control character, visible
    assert "\\u{202e}" in shown  # a direction override, visible and inert
    assert row.locator("td.type").get_attribute("title") == HOSTILE_TYPE.replace(
        "\u0007", "\\u{0007}"
    ).replace("\u202e", "\\u{202e}")
    assert row.locator("td.extras").inner_text().startswith("reason: \\u{001b}[31mred")
    assert row.locator("td.order a").get_attribute("href") == "/chains/" + quote(
        HOSTILE_KEY, safe="~()*!'"
    )
    assert_nothing_ran(page)


def test_live_filters_and_pause(page: Any, console: ConsoleServer) -> None:
    page.goto(f"{console.url}/live?outcome=delivered")
    page.wait_for_selector("#deliveries tr")
    page.wait_for_timeout(300)
    assert page.locator("#deliveries tr").count() == 1
    page.select_option("select[name=outcome]", "dead-lettered")
    assert page.locator("#deliveries tr").count() == 1
    assert "DEAD-LETTERED" in page.locator("#deliveries tr").inner_text()
    assert "outcome=dead-lettered" in page.url  # the filter is part of the address
    page.fill("input[name=trigger]", "no-such-trigger")
    assert page.locator("#deliveries tr").count() == 0
    assert_nothing_ran(page)


def test_the_live_list_pauses_while_scrolled_up(
    page: Any, console: ConsoleServer, upstreams: Upstreams
) -> None:
    upstreams.activity = [activity_entry(seq, outcome="delivered") for seq in range(1, 81)]
    page.goto(f"{console.url}/live")
    expect(page.locator("#deliveries tr")).to_have_count(80)
    feed = page.locator("#feed")
    assert feed.evaluate("node => node.scrollHeight > node.clientHeight")
    feed.evaluate("node => { node.scrollTop = 0; }")
    expect(page.locator("#resume")).to_be_visible()
    upstreams.activity += [activity_entry(seq, outcome="retried") for seq in range(81, 84)]
    # The stream reconnects (the fake broker ends it) and brings the three new ones: held back.
    expect(page.locator("#resume")).to_have_text("Paused: 3 new — resume", timeout=15_000)
    assert page.locator("#deliveries tr").count() == 80
    assert feed.evaluate("node => node.scrollTop") == 0  # nothing moved under the reader
    page.click("#resume")
    expect(page.locator("#deliveries tr")).to_have_count(83)
    expect(page.locator("#resume")).to_be_hidden()
    assert "retried #1" in page.locator("#deliveries tr").last.inner_text()


def test_a_chain_page_shows_events_dead_letters_and_the_waterfall(
    page: Any, console: ConsoleServer
) -> None:
    page.goto(f"{console.url}/chains/{quote(HOSTILE_KEY, safe='')}")
    page.wait_for_selector("section.trace table.waterfall tr.span")
    assert page.locator("h1 code.key").inner_text() == HOSTILE_KEY
    assert page.locator("li.event .etype").first.get_attribute("title") is not None
    assert page.locator("table.waterfall td.service").first.inner_text() == "<i>evil-service</i>"
    assert page.locator("#dead-letter-table tbody tr").count() == 1
    assert page.locator("#chain-deliveries tbody tr").count() == 2
    assert page.locator(f"section.trace[data-trace='{TRACE_ID}']").count() == 1
    assert_nothing_ran(page)


def test_a_bad_chain_address_is_refused(page: Any, console: ConsoleServer) -> None:
    answer = page.goto(f"{console.url}/chains/%1b%5b2J")
    assert answer is not None
    assert answer.status == 400


def test_a_dead_letter_page_shows_the_event_and_its_decoded_error(
    page: Any, console: ConsoleServer
) -> None:
    page.goto(f"{console.url}/dead-letters/1")
    page.wait_for_selector("table.attributes")
    assert "<script>window.__pwned=1</script>" in page.locator("main pre").first.inner_text()
    data = page.locator("main pre").last.inner_text()
    assert "<script>window.__pwned=1</script>" in data
    assert "\\u0007" in data
    assert page.locator("dl.facts dd").nth(4).inner_text().startswith("\\u{001b}[31mred")
    assert_nothing_ran(page)


def test_search_opens_the_chain_of_a_trace(page: Any, console: ConsoleServer) -> None:
    page.goto(f"{console.url}/")
    page.fill("#search input", TRACE_ID)
    page.press("#search input", "Enter")
    page.wait_for_url("**/chains/**")
    page.wait_for_selector("section.trace")
    assert page.locator("h1 code.key").inner_text() == HOSTILE_KEY
    page.fill("#search input", "nothing-like-this")
    page.press("#search input", "Enter")
    expect(page.locator("#search-result")).to_have_text("nothing found")


def test_the_topology_draws_every_trigger_with_its_numbers(
    page: Any, console: ConsoleServer
) -> None:
    page.goto(f"{console.url}/")
    page.wait_for_selector("svg#topology g.node.trigger")
    assert page.locator("svg#topology g.node.trigger").count() == 12  # the shop's Triggers
    assert page.locator("svg#topology g.node.function").count() == 5
    row = page.locator("#trigger-stats tr[data-trigger='default/payment-inventory-reserved']")
    expect(row.locator("td[data-stat=retried]")).to_have_text("5")
    assert row.locator("td[data-stat=failed]").inner_text() == "1"
    label = page.locator("text.edge-label[data-trigger='default/payment-inventory-reserved']")
    assert "5 retries · 1 failed" in str(label.text_content())
    lag = page.locator(
        "#trigger-stats tr[data-trigger='default/inventory-order-created'] td[data-stat=lag]"
    )
    assert lag.inner_text() == "2"
    assert_nothing_ran(page)

"""inventory: whole-order reservations, rejections naming the short SKUs, compensations, and the
stock invariant (available + reserved + sold == seed) under any sequence of events."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from cascade import Event
from cascade.settings import Settings
from cascade.testing import FunctionClient
from functions.shop import samples
from functions.shop.events import (
    InventoryRejected,
    InventoryReserved,
    LineItem,
    OrderCreated,
    Shortage,
)
from tests.functions.conftest import ClientFactory, body
from tests.shop import ROOT, load

inventory = load("inventory")
SEED: dict[str, int] = dict(inventory.SEED)


@pytest.fixture
def client(make_client: ClientFactory) -> FunctionClient:
    return make_client("inventory")


def stock(client: FunctionClient) -> dict[str, dict[str, int]]:
    result = client.get("/stock")
    assert result.status == 200
    document = body(result)
    assert document["conserved"] is True
    return {row["sku"]: row for row in document["skus"]}


def reservation(client: FunctionClient, order_id: str) -> dict[str, Any]:
    result = client.get(f"/reservations/{order_id}")
    assert result.status == 200, result.body
    document: dict[str, Any] = body(result)
    return document


def test_stock_is_seeded_from_the_data_file_on_first_use(client: FunctionClient) -> None:
    rows = stock(client)
    assert json.loads((ROOT / "functions" / "inventory" / "stock.json").read_text()) == SEED
    assert {sku: row["available"] for sku, row in rows.items()} == SEED
    assert all(row["reserved"] == row["sold"] == 0 for row in rows.values())


def test_reserves_every_line_and_replies_keyed_by_order(client: FunctionClient) -> None:
    result = client.send(samples.order_created("o-1", {"MUG": 2, "POSTER": 1}))
    assert result.status == 200
    reply = result.reply(InventoryReserved)
    assert reply.order_id == "o-1"
    assert [(i.sku, i.quantity) for i in reply.items] == [("MUG", 2), ("POSTER", 1)]
    assert result.attributes["partitionkey"] == "o-1"
    assert result.attributes["subject"] == "o-1"
    rows = stock(client)
    assert (rows["MUG"]["available"], rows["MUG"]["reserved"]) == (SEED["MUG"] - 2, 2)
    assert (rows["POSTER"]["available"], rows["POSTER"]["reserved"]) == (SEED["POSTER"] - 1, 1)
    assert reservation(client, "o-1") == {
        "order_id": "o-1",
        "state": "RESERVED",
        "lines": [{"sku": "MUG", "quantity": 2}, {"sku": "POSTER", "quantity": 1}],
    }


def test_rejection_names_every_short_sku_and_reserves_nothing(client: FunctionClient) -> None:
    before = stock(client)
    order = samples.order_created("o-2", {"MUG": 1, "POSTER": SEED["POSTER"] + 1, "NOPE": 2})
    result = client.send(order)
    assert result.status == 200
    reply = result.reply(InventoryRejected)
    assert reply.shortages == [
        Shortage(sku="NOPE", requested=2, available=0, known=False),
        Shortage(sku="POSTER", requested=SEED["POSTER"] + 1, available=SEED["POSTER"]),
    ]
    assert stock(client) == before  # MUG was available, and is still not reserved
    assert reservation(client, "o-2") == {"order_id": "o-2", "state": "REJECTED", "lines": []}


def test_sold_out_sku_is_short(client: FunctionClient) -> None:
    assert SEED["VINYL"] == 0
    reply = client.send(samples.order_created("o-3", {"VINYL": 1})).reply(InventoryRejected)
    assert reply.shortages == [Shortage(sku="VINYL", requested=1, available=0, known=True)]


def test_lines_of_one_sku_are_added_up(client: FunctionClient) -> None:
    half = SEED["POSTER"] // 2 + 1  # each line fits, both together do not
    order = OrderCreated(
        order_id="o-4",
        customer=samples.ADA,
        items=[LineItem(sku="POSTER", quantity=half), LineItem(sku="POSTER", quantity=half)],
        placed_at=samples.PLACED_AT,
    )
    reply = client.send(order).reply(InventoryRejected)
    assert reply.shortages[0].requested == 2 * half


def test_payment_declined_releases_the_reservation(client: FunctionClient) -> None:
    client.send(samples.order_created("o-5", {"TSHIRT": 3}))
    assert stock(client)["TSHIRT"]["reserved"] == 3
    assert client.send(samples.payment_declined("o-5", 7500)).status == 204
    rows = stock(client)
    assert (rows["TSHIRT"]["available"], rows["TSHIRT"]["reserved"]) == (SEED["TSHIRT"], 0)
    assert reservation(client, "o-5")["state"] == "RELEASED"
    # The order.cancelled that follows finds nothing left to release.
    assert client.send(samples.order_cancelled("o-5", {"TSHIRT": 3})).status == 204
    assert stock(client)["TSHIRT"]["available"] == SEED["TSHIRT"]


def test_order_cancelled_releases_the_reservation(client: FunctionClient) -> None:
    client.send(samples.order_created("o-6", {"HOODIE": 2}))
    client.send(samples.order_cancelled("o-6", {"HOODIE": 2}, reason="payment_declined"))
    assert stock(client)["HOODIE"] == {
        "sku": "HOODIE",
        "seed": SEED["HOODIE"],
        "available": SEED["HOODIE"],
        "reserved": 0,
        "sold": 0,
    }


def test_confirmation_turns_the_reservation_into_sold(client: FunctionClient) -> None:
    client.send(samples.order_created("o-7", {"MUG": 4}))
    assert client.send(samples.order_confirmed("o-7", {"MUG": 4})).status == 204
    rows = stock(client)
    assert (rows["MUG"]["available"], rows["MUG"]["reserved"], rows["MUG"]["sold"]) == (
        SEED["MUG"] - 4,
        0,
        4,
    )
    assert reservation(client, "o-7")["state"] == "SOLD"
    # A late cancellation cannot put sold stock back.
    client.send(samples.order_cancelled("o-7", {"MUG": 4}))
    assert stock(client)["MUG"]["sold"] == 4


def test_the_same_event_twice_changes_stock_once(client: FunctionClient) -> None:
    event = samples.order_created("o-8", {"STICKER": 10})
    first = client.send(event, event_id="dup-1")
    second = client.send(event, event_id="dup-1")
    assert (second.status, second.body) == (first.status, first.body)
    assert second.attributes["id"] == first.attributes["id"]  # the stored reply, not a new one
    assert stock(client)["STICKER"]["reserved"] == 10
    released = samples.payment_declined("o-8")
    client.send(released, event_id="dup-2")
    client.send(released, event_id="dup-2")
    assert stock(client)["STICKER"]["available"] == SEED["STICKER"]


def test_a_second_order_created_for_a_known_order_changes_nothing(client: FunctionClient) -> None:
    client.send(samples.order_created("o-9", {"MUG": 1}))
    result = client.send(samples.order_created("o-9", {"MUG": 50}))  # new id, same order
    assert result.status == 204
    assert stock(client)["MUG"]["reserved"] == 1


def test_a_release_before_the_reservation_blocks_a_late_reservation(
    client: FunctionClient,
) -> None:
    assert client.send(samples.order_cancelled("o-10", {"MUG": 1})).status == 204
    assert client.send(samples.order_created("o-10", {"MUG": 1})).status == 204
    assert stock(client)["MUG"]["reserved"] == 0
    assert reservation(client, "o-10")["state"] == "RELEASED"


def test_confirming_an_order_without_reservation_goes_to_the_dead_letter_sink(
    client: FunctionClient,
) -> None:
    result = client.send(samples.order_confirmed("o-11", {"MUG": 1}))
    assert result.status == 422
    assert "o-11" in result.headers["Kne-Reason"]
    assert "not reserved" in result.headers["Kne-Reason"]


def test_the_database_refuses_to_break_the_invariant(client: FunctionClient) -> None:
    stock(client)  # seeds
    with pytest.raises(IntegrityError), client.runtime.store.transaction() as session:
        session.execute(text("UPDATE inventory_stock SET available = available + 1"))
    with pytest.raises(IntegrityError), client.runtime.store.transaction() as session:
        session.execute(
            text("UPDATE inventory_stock SET available = -1, reserved = reserved + 1 + available")
        )


def test_read_routes_answer_404_for_unknown_things(client: FunctionClient) -> None:
    for path in ("/stock/NOPE", "/reservations/never-seen"):
        result = client.get(path)
        assert result.status == 404
        assert result.problem is not None
        assert result.problem["detail"]
    assert body(client.get("/stock/MUG"))["available"] == SEED["MUG"]


def test_a_bad_stock_file_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "stock.json"
    bad.write_text('{"MUG": -1}')
    with pytest.raises(ValueError, match="stock.json"):
        inventory.load_seed(bad)
    with pytest.raises(ValueError, match="missing.json"):
        inventory.load_seed(tmp_path / "missing.json")


# --------------------------------------------------------------------------- invariant


SKUS = ["MUG", "POSTER", "LAPTOP", "VINYL", "NOPE"]
operations = st.lists(
    st.tuples(
        st.sampled_from(["create", "confirm", "cancel", "decline"]),
        st.integers(min_value=0, max_value=5),  # which order
        st.dictionaries(st.sampled_from(SKUS), st.integers(1, 4), min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=25,
)


def check_invariant(client: FunctionClient) -> None:
    rows = stock(client)
    for row in rows.values():
        assert row["available"] + row["reserved"] + row["sold"] == row["seed"], row
        assert min(row["available"], row["reserved"], row["sold"]) >= 0, row
    # reserved and sold are exactly the lines of RESERVED and SOLD orders.
    with client.runtime.store.session() as session:
        held = session.execute(
            text(
                "SELECT o.state, l.sku, SUM(l.quantity) FROM inventory_lines l "
                "JOIN inventory_orders o ON o.order_id = l.order_id "
                "WHERE o.state IN ('RESERVED', 'SOLD') GROUP BY o.state, l.sku"
            )
        ).all()
    by_state = {(state, sku): int(total) for state, sku, total in held}
    for sku, row in rows.items():
        assert row["reserved"] == by_state.get(("RESERVED", sku), 0)
        assert row["sold"] == by_state.get(("SOLD", sku), 0)


def event_for(kind: str, order_id: str, lines: dict[str, int]) -> Event:
    if kind == "create":
        return samples.order_created(order_id, lines)
    if kind == "confirm":
        return samples.order_confirmed(order_id, lines)
    if kind == "cancel":
        return samples.order_cancelled(order_id, lines)
    return samples.payment_declined(order_id)


@settings(max_examples=25, deadline=None)
@given(operations)
def test_stock_is_conserved_under_any_sequence_of_events(
    steps: list[tuple[str, int, dict[str, int]]],
) -> None:
    with (
        tempfile.TemporaryDirectory() as folder,
        FunctionClient(inventory.fn, Settings(data_dir=Path(folder))) as client,
    ):
        for kind, which, lines in steps:
            result = client.send(event_for(kind, f"h-{which}", lines))
            # Confirming what is not reserved is the one refusal (dead-lettered, no effect).
            assert result.status in (200, 204) or (kind == "confirm" and result.status == 422)
            check_invariant(client)

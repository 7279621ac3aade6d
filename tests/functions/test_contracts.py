"""The shared contracts: type names, keys, id rules, the price list."""

from __future__ import annotations

import re
import uuid

import pytest
from pydantic import ValidationError

from cascade.events import registry
from functions.shop import samples
from functions.shop.events import SHOP_EVENTS, LineItem, OrderCreated, keyed
from functions.shop.prices import PRICES, UnknownPrice, amount_cents
from tests.shop import load


def test_every_type_is_reverse_dns_and_registered() -> None:
    for model in SHOP_EVENTS:
        assert model.ce_type is not None
        assert re.fullmatch(r"com\.example\.shop\.[a-z]+\.[a-z]+", model.ce_type)
        assert registry.get(model.ce_type) is model
    assert len({model.ce_type for model in SHOP_EVENTS}) == len(SHOP_EVENTS)


def test_keyed_sets_partitionkey_and_subject_to_the_order_id() -> None:
    reply = keyed(samples.payment_declined("o-42"))
    assert (reply.partitionkey, reply.subject) == ("o-42", "o-42")


@pytest.mark.parametrize("order_id", [str(uuid.uuid4()), "a", "A.b_c-1", "x" * 64])
def test_order_ids_that_are_accepted(order_id: str) -> None:
    assert samples.payment_declined(order_id).order_id == order_id


@pytest.mark.parametrize("order_id", ["", "../etc", ".hidden", "a b", "a/b", "x" * 65, "é", "a\n"])
def test_order_ids_that_are_refused(order_id: str) -> None:
    # Ids end up in URLs, file names and CloudEvents attributes.
    with pytest.raises(ValidationError):
        samples.payment_declined(order_id)


def test_events_ignore_fields_they_do_not_know() -> None:
    data = samples.order_created("o-1", {"MUG": 1}).model_dump(mode="json")
    data["gift_wrap"] = True
    assert OrderCreated.model_validate(data).order_id == "o-1"


def test_every_stocked_sku_has_a_price() -> None:
    assert set(load("inventory").SEED) <= set(PRICES)


def test_amount_names_every_unpriced_sku() -> None:
    lines = [LineItem(sku="MUG", quantity=3), LineItem(sku="TSHIRT", quantity=1)]
    assert amount_cents(lines) == 3 * PRICES["MUG"] + PRICES["TSHIRT"]
    with pytest.raises(UnknownPrice) as raised:
        amount_cents([LineItem(sku="ZZZ", quantity=1), LineItem(sku="AAA", quantity=1)])
    assert raised.value.skus == ["AAA", "ZZZ"]

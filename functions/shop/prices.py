"""The price list payment charges from: unit prices in cents of ``CURRENCY`` (EUR).

Every SKU inventory stocks has a price here (a test checks it); an order only reaches payment
once inventory reserved it, so an unknown SKU never gets this far.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from functions.shop.events import LineItem

__all__ = ["PRICES", "UnknownPrice", "amount_cents"]

PRICES: Mapping[str, int] = MappingProxyType(
    {
        "HOODIE": 5900,
        "LAPTOP": 149900,
        "MUG": 1250,
        "POSTER": 900,
        "STICKER": 150,
        "TSHIRT": 2500,
        "VINYL": 3200,
    }
)


class UnknownPrice(LookupError):
    """A SKU has no price; ``skus`` lists them."""

    def __init__(self, skus: list[str]) -> None:
        super().__init__(f"no price for SKU {', '.join(skus)}")
        self.skus = skus


def amount_cents(items: Iterable[LineItem]) -> int:
    """Total of ``items`` in cents; raises :class:`UnknownPrice` naming every unpriced SKU."""
    lines = list(items)
    missing = sorted({item.sku for item in lines if item.sku not in PRICES})
    if missing:
        raise UnknownPrice(missing)
    return sum(PRICES[item.sku] * item.quantity for item in lines)

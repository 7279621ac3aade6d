"""Sample shop events, for ``fn.example(...)`` and tests: one builder per event type.

``lines`` is ``{sku: quantity}``; amounts are computed from the price list when a builder needs
one and none is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from functions.shop.events import (
    CancelReason,
    Customer,
    DeclineReason,
    InventoryRejected,
    InventoryReserved,
    LineItem,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    PaymentAuthorized,
    PaymentDeclined,
    Shortage,
)
from functions.shop.prices import PRICES

__all__ = [
    "ADA",
    "PLACED_AT",
    "inventory_rejected",
    "inventory_reserved",
    "items",
    "order_cancelled",
    "order_confirmed",
    "order_created",
    "payment_authorized",
    "payment_declined",
]

ADA = Customer(id="cust-ada", email="ada@example.com")
PLACED_AT = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def items(lines: Mapping[str, int]) -> list[LineItem]:
    return [LineItem(sku=sku, quantity=quantity) for sku, quantity in lines.items()]


def _amount(lines: Mapping[str, int]) -> int:
    return sum(PRICES.get(sku, 0) * quantity for sku, quantity in lines.items())


def order_created(
    order_id: str, lines: Mapping[str, int], customer: Customer = ADA
) -> OrderCreated:
    return OrderCreated(
        order_id=order_id, customer=customer, items=items(lines), placed_at=PLACED_AT
    )


def inventory_reserved(
    order_id: str, lines: Mapping[str, int], customer: Customer = ADA
) -> InventoryReserved:
    return InventoryReserved(order_id=order_id, customer=customer, items=items(lines))


def inventory_rejected(order_id: str, short: Mapping[str, int]) -> InventoryRejected:
    """``short`` is ``{sku: requested}``; each is reported with nothing available."""
    return InventoryRejected(
        order_id=order_id,
        shortages=[
            Shortage(sku=sku, requested=requested, available=0, known=sku in PRICES)
            for sku, requested in short.items()
        ],
    )


def payment_authorized(
    order_id: str, lines: Mapping[str, int], customer: Customer = ADA
) -> PaymentAuthorized:
    return PaymentAuthorized(
        order_id=order_id,
        customer=customer,
        items=items(lines),
        amount_cents=_amount(lines),
        authorization_id=f"auth-{order_id}",
    )


def payment_declined(
    order_id: str, amount_cents: int = 0, reason: DeclineReason = "customer_blocked"
) -> PaymentDeclined:
    return PaymentDeclined(
        order_id=order_id, amount_cents=amount_cents, reason=reason, message=f"declined: {reason}"
    )


def order_confirmed(
    order_id: str, lines: Mapping[str, int], customer: Customer = ADA
) -> OrderConfirmed:
    return OrderConfirmed(
        order_id=order_id, customer=customer, items=items(lines), amount_cents=_amount(lines)
    )


def order_cancelled(
    order_id: str,
    lines: Mapping[str, int],
    reason: CancelReason = "out_of_stock",
    customer: Customer = ADA,
) -> OrderCancelled:
    return OrderCancelled(
        order_id=order_id,
        customer=customer,
        items=items(lines),
        reason=reason,
        detail=f"cancelled: {reason}",
    )

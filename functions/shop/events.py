"""Event contracts of the shop: one pydantic model per CloudEvents type.

Every event is about one order and carries its id in ``order_id``; the CloudEvents
``partitionkey`` (and ``subject``) of every shop event is that id, so all events of one order
land in one partition and Triggers marked ``ordered`` see them in order. Use :func:`keyed` to
wrap a reply or a published event so that this holds.

The saga (each arrow is a Trigger in k8s/rendered/shop.yaml)::

    POST /orders → order.created → inventory → inventory.rejected → order → order.cancelled
                                             → inventory.reserved → payment
    payment → payment.authorized → order → order.confirmed
            → payment.declined   → order → order.cancelled
                                 → inventory (release)
    order.confirmed → inventory (sell), notification (email)
    order.cancelled → inventory (release), notification (email)

Models accept unknown fields and ignore them (tolerant reader), so a producer may add a field
before its consumers know it. Field rules (patterns, bounds) are shared with the order API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from cascade import Event, Reply
from functions.shop.email_address import one_address

__all__ = [
    "CURRENCY",
    "CancelReason",
    "Customer",
    "CustomerId",
    "DeclineReason",
    "Email",
    "InventoryRejected",
    "InventoryReserved",
    "LineItem",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderCreated",
    "OrderEvent",
    "OrderId",
    "PaymentAuthorized",
    "PaymentDeclined",
    "Quantity",
    "SHOP_EVENTS",
    "Shortage",
    "Sku",
    "keyed",
]

CURRENCY = "EUR"

# Identifiers travel in URLs, file names (the notification outbox) and CloudEvents
# attributes, so they are restricted to a safe alphabet.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

OrderId = Annotated[
    str,
    StringConstraints(pattern=_ID_PATTERN),
    Field(description="Order id: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit."),
]
Sku = Annotated[
    str,
    StringConstraints(pattern=_ID_PATTERN),
    Field(description="Stock keeping unit, case-sensitive (same alphabet as ids)."),
]
CustomerId = Annotated[
    str,
    StringConstraints(pattern=_ID_PATTERN),
    Field(description="Customer id (same alphabet as order ids)."),
]
Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"),
    Field(description="Where the order's email goes: local@domain.tld."),
    AfterValidator(one_address),
]
Quantity = Annotated[int, Field(ge=1, le=1000, description="How many units: 1 to 1000.")]
Cents = Annotated[int, Field(ge=0, description="Amount in cents of the currency.")]

CancelReason = Literal["out_of_stock", "payment_declined"]
DeclineReason = Literal["amount_over_limit", "customer_blocked"]


class Customer(BaseModel):
    """Who placed the order."""

    id: CustomerId
    email: Email


class LineItem(BaseModel):
    """One line of an order."""

    sku: Sku
    quantity: Quantity


Items = Annotated[
    list[LineItem], Field(min_length=1, max_length=50, description="The order's lines.")
]
Currency = Annotated[str, Field(description="ISO 4217 code of the amount's currency.")]


class Shortage(BaseModel):
    """A line inventory could not reserve; an unknown SKU has ``known: false``, available 0."""

    sku: Sku
    requested: int = Field(ge=1, description="Units the order asked for.")
    available: int = Field(ge=0, description="Units available when it was checked.")
    known: bool = Field(default=True, description="False for a SKU inventory does not stock.")


class OrderEvent(Event):
    """Fields every shop event has (unbound base, not an event type itself)."""

    order_id: OrderId


class OrderCreated(OrderEvent, type="com.example.shop.order.created"):
    """An order was placed through ``POST /orders`` and is PENDING."""

    customer: Customer
    items: Items
    placed_at: datetime = Field(description="When the order was placed (RFC 3339).")


class InventoryReserved(OrderEvent, type="com.example.shop.inventory.reserved"):
    """Every line of the order is reserved; payment may charge it."""

    customer: Customer
    items: Items


class InventoryRejected(OrderEvent, type="com.example.shop.inventory.rejected"):
    """Some lines could not be reserved (nothing was reserved); the order will be cancelled."""

    shortages: Annotated[
        list[Shortage], Field(min_length=1, description="The lines that could not be reserved.")
    ]


class PaymentAuthorized(OrderEvent, type="com.example.shop.payment.authorized"):
    """The amount of the order was authorized."""

    customer: Customer
    items: Items
    amount_cents: Cents
    currency: Currency = CURRENCY
    authorization_id: str = Field(description="The gateway's reference of the authorization.")


class PaymentDeclined(OrderEvent, type="com.example.shop.payment.declined"):
    """The payment was declined; the reservation must be released."""

    amount_cents: Cents
    currency: Currency = CURRENCY
    reason: DeclineReason = Field(description="Why, as a code.")
    message: str = Field(description="Why, in words.")


class OrderConfirmed(OrderEvent, type="com.example.shop.order.confirmed"):
    """Final: the order is paid and its stock is sold."""

    customer: Customer
    items: Items
    amount_cents: Cents
    currency: Currency = CURRENCY


class OrderCancelled(OrderEvent, type="com.example.shop.order.cancelled"):
    """Final: the order will not be fulfilled; ``reason`` says why, ``detail`` in words."""

    customer: Customer
    items: Items
    reason: CancelReason = Field(description="Why, as a code.")
    detail: str = Field(description="Why, in words (e.g. which SKUs were short).")


SHOP_EVENTS: tuple[type[OrderEvent], ...] = (
    OrderCreated,
    InventoryReserved,
    InventoryRejected,
    PaymentAuthorized,
    PaymentDeclined,
    OrderConfirmed,
    OrderCancelled,
)
"""Every event type of the shop, in saga order."""


def keyed(event: OrderEvent) -> Reply:
    """``event`` with ``partitionkey`` and ``subject`` set to its order id."""
    return Reply(event, partitionkey=event.order_id, subject=event.order_id)

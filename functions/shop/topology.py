"""The shop's sagas, declared once: how an order starts and what each handler answers, per ending.

Who receives an event is not repeated here: that is the Triggers of k8s/rendered/shop.yaml (the
chart's render). Joined with them, this declaration says everything one order does, hop by hop,
and so what its trace must look like: tests/observability/trace_shape.py derives the exact
parent/child edges and links of each trace from it (retries and dead letters included), and
tests/observability/test_traces.py checks real traces of a ``cascade run`` against them.
Adding a function or a step to the shop is one line here (and its Trigger in the chart).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cascade import Event, bound_type
from functions.shop.events import (
    InventoryRejected,
    InventoryReserved,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    PaymentAuthorized,
    PaymentDeclined,
)

__all__ = ["ORIGIN", "SAGAS", "Origin", "Saga"]


@dataclass(frozen=True)
class Origin:
    """Where every order starts: an HTTP route of a function that publishes to K_SINK."""

    function: str
    method: str
    route: str
    publishes: type[Event]

    @property
    def event_type(self) -> str:
        return bound_type(self.publishes)


@dataclass(frozen=True)
class Saga:
    """One way an order can end: ``replies[(event, function)]`` is what ``function`` answers to
    ``event`` on this path. A pair left out answers nothing (204): the event ends there."""

    description: str
    replies: Mapping[tuple[type[Event], str], type[Event]]

    def reply_to(self, event_type: str, function: str) -> str | None:
        for (event, handler), reply in self.replies.items():
            if bound_type(event) == event_type and handler == function:
                return bound_type(reply)
        return None


ORIGIN: Final = Origin("order", "POST", "/orders", OrderCreated)

SAGAS: Final[Mapping[str, Saga]] = {
    "confirmed": Saga(
        "stock reserved, payment authorized, order confirmed",
        {
            (OrderCreated, "inventory"): InventoryReserved,
            (InventoryReserved, "payment"): PaymentAuthorized,
            (PaymentAuthorized, "order"): OrderConfirmed,
        },
    ),
    "out_of_stock": Saga(
        "stock short, order cancelled",
        {
            (OrderCreated, "inventory"): InventoryRejected,
            (InventoryRejected, "order"): OrderCancelled,
        },
    ),
    "declined": Saga(
        "stock reserved, payment declined, reservation released, order cancelled",
        {
            (OrderCreated, "inventory"): InventoryReserved,
            (InventoryReserved, "payment"): PaymentDeclined,
            (PaymentDeclined, "order"): OrderCancelled,
        },
    ),
}

"""order: the shop's HTTP API and the owner of every order's state.

HTTP (JSON; errors are application/problem+json):

- ``POST /orders`` ``{"customer": {"id", "email"}, "items": [{"sku", "quantity"}]}`` → 201 with
  the order, state PENDING, as soon as the order and its ``order.created`` event are committed
  together (``ctx.publish``: the runtime's outbox sends the event after the commit and retries
  it until the broker takes it; the request never waits on the broker). 400 for a body that is
  not JSON, 415 when not sent as JSON, 413 past the size limit, 422 with one entry per invalid
  field. An ``Idempotency-Key`` header makes a retried POST return the first order.
- ``GET /orders/<id>`` → the order with its history; 404 when unknown.
- ``GET /orders?state=PENDING&limit=50`` → the newest orders, without history (admin: customer
  emails).
- ``GET /outbox`` → how many events wait to be published; ``POST /outbox/flush`` (admin) → a
  relay pass now.

Events: ``inventory.rejected`` and ``payment.declined`` → CANCELLED (reply
``order.cancelled``); ``payment.authorized`` → CONFIRMED (reply ``order.confirmed``). Final
states never change: a later event for a final order is logged and ignored.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cascade import Context, DeadLetter, Function, HttpContext, Reply
from cascade.http import fail, limit_arg, problem_response, read_json
from functions.order.models import (
    CANCELLED,
    CONFIRMED,
    FINAL_STATES,
    PENDING,
    Base,
    Order,
    OrderHistory,
)
from functions.shop import samples
from functions.shop.clock import iso, now_iso
from functions.shop.events import (
    CURRENCY,
    CancelReason,
    Customer,
    InventoryRejected,
    LineItem,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    PaymentAuthorized,
    PaymentDeclined,
    keyed,
)

PUBLISHES: Final = (OrderCreated,)
"""Types this function originates through K_SINK (not replies); read by the catalog and tests."""

STATES: Final = (PENDING, CONFIRMED, CANCELLED)
MAX_LIST: Final = 500

fn = Function("order", metadata=Base.metadata)

# The order funnel (k8s/dashboards): counted when the order's transaction commits.
ORDERS = fn.metrics.counter(
    "cascade_shop_orders", "Orders placed, confirmed and cancelled (state reached).", ["state"]
)


@fn.metrics.gauge("cascade_shop_orders_pending", "Orders placed and not yet final.")
def pending_orders(session: Session) -> float:
    count = session.scalar(select(func.count()).select_from(Order).where(Order.state == PENDING))
    return float(count or 0)


# --------------------------------------------------------------------------- the API body


class NewCustomer(Customer):
    model_config = ConfigDict(extra="forbid")


class NewItem(LineItem):
    model_config = ConfigDict(extra="forbid")


class NewOrder(BaseModel):
    """The body of ``POST /orders``: unknown fields are refused, types are strict."""

    model_config = ConfigDict(extra="forbid")

    customer: NewCustomer
    items: Annotated[list[NewItem], Field(min_length=1, max_length=50)]

    @field_validator("items")
    @classmethod
    def one_line_per_sku(cls, items: list[NewItem]) -> list[NewItem]:
        skus = [item.sku for item in items]
        repeated = sorted({sku for sku in skus if skus.count(sku) > 1})
        if repeated:
            raise ValueError(
                f"SKU {', '.join(repeated)} is on several lines; put its total quantity on one"
            )
        return items


# --------------------------------------------------------------------------- helpers


def order_document(
    ctx: HttpContext,
    order: Order,
    *,
    history: bool = True,
    known_history: Sequence[OrderHistory] | None = None,
) -> dict[str, Any]:
    """The order as the API shows it; ``known_history`` spares the query when the caller has
    the rows (a just-placed order's one row)."""
    document: dict[str, Any] = {
        "id": order.id,
        "state": order.state,
        "customer": order.customer,
        "items": order.items,
        "amount_cents": order.amount_cents,
        "currency": order.currency,
        "reason": order.reason,
        "detail": order.detail,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }
    if history:
        rows = known_history
        if rows is None:
            query = select(OrderHistory).where(OrderHistory.order_id == order.id)
            rows = ctx.store.scalars(query.order_by(OrderHistory.id)).all()
        document["history"] = [
            {
                "at": row.at,
                "state": row.state,
                "event_type": row.event_type,
                "event_id": row.event_id,
                "note": row.note,
            }
            for row in rows
        ]
        document["events_pending"] = ctx.outbox.pending(partitionkey=order.id)
    return document


def idempotency_key(ctx: HttpContext) -> str | None:
    key = ctx.request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        fail(400, "Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


def replayed(ctx: HttpContext, first: Order, key: str, digest: str) -> Any:
    """The answer to a POST repeating an earlier one's Idempotency-Key."""
    if first.request_hash != digest:
        fail(422, f"Idempotency-Key {key!r} was used for a different order; use a new key")
    headers = {"Location": f"/orders/{first.id}", "Idempotent-Replayed": "true"}
    return order_document(ctx, first), 200, headers


# --------------------------------------------------------------------------- HTTP API


@fn.route("/orders", methods=["POST"])
def place_order(ctx: HttpContext) -> Any:
    session = ctx.store
    new = read_json(ctx.request, NewOrder, "order")
    key = idempotency_key(ctx)
    digest = hashlib.sha256(new.model_dump_json().encode()).hexdigest()
    if key is not None:
        first = session.scalar(select(Order).where(Order.idempotency_key == key))
        if first is not None:
            return replayed(ctx, first, key, digest)

    placed = datetime.now(UTC)
    customer = Customer.model_validate(new.customer.model_dump())
    items = [LineItem.model_validate(item.model_dump()) for item in new.items]
    order = Order(
        id=str(uuid.uuid4()),
        state=PENDING,
        customer=customer.model_dump(),
        items=[item.model_dump() for item in items],
        currency=CURRENCY,
        idempotency_key=key,
        request_hash=digest,
        created_at=iso(placed),
        updated_at=iso(placed),
    )
    created = OrderCreated(order_id=order.id, customer=customer, items=items, placed_at=placed)
    first_step = OrderHistory(
        order_id=order.id,
        at=order.created_at,
        state=PENDING,
        event_type=None,
        event_id=None,
        note="placed",
    )
    session.add(order)
    session.add(first_step)
    try:
        # The order and its event, or neither: the event is sent after this commit.
        ctx.publish(created, partitionkey=order.id, subject=order.id)
        session.commit()
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key committed first (PostgreSQL).
        session.rollback()
        first = session.scalar(select(Order).where(Order.idempotency_key == key))
        if key is None or first is None:
            raise
        return replayed(ctx, first, key, digest)
    ORDERS.labels(state="placed").inc()
    ctx.logger.info("order %s placed", order.id)
    # Its history is the row above: reading it back would begin a second transaction (on
    # SQLite a write one, behind every other writer) only to answer.
    document = order_document(ctx, order, known_history=[first_step])
    return document, 201, {"Location": f"/orders/{order.id}"}


@fn.route("/orders/<order_id>")
def get_order(ctx: HttpContext, order_id: str) -> Any:
    order = ctx.store.get(Order, order_id)
    if order is None:
        return problem_response(404, f"no order {order_id!r}")
    return order_document(ctx, order)


@fn.route("/orders", admin=True)
def list_orders(ctx: HttpContext) -> Any:
    state = ctx.request.args.get("state")
    if state is not None and state not in STATES:
        fail(400, f"state must be one of {', '.join(STATES)}, got {state!r}")
    limit = limit_arg(ctx.request, 50, MAX_LIST)
    query = select(Order).order_by(Order.created_at.desc(), Order.id).limit(limit)
    if state is not None:
        query = query.where(Order.state == state)
    orders = ctx.store.scalars(query)
    return {"orders": [order_document(ctx, o, history=False) for o in orders]}


@fn.route("/outbox")
def outbox_status(ctx: HttpContext) -> dict[str, int]:
    return {"pending": ctx.outbox.pending()}


@fn.route("/outbox/flush", methods=["POST"], admin=True)
def outbox_flush(ctx: HttpContext) -> dict[str, int]:
    result = ctx.outbox.flush()
    return {"published": result.published, "failed": result.failed, "pending": result.pending}


# --------------------------------------------------------------------------- events


def find(ctx: Context, order_id: str) -> Order | None:
    return ctx.store.get(Order, order_id, with_for_update=True)


def is_final(ctx: Context, order: Order) -> bool:
    """Final orders never change: the event is logged and ignored."""
    if order.state in FINAL_STATES:
        ctx.logger.warning(
            "order %s is already %s; ignoring %s %s", order.id, order.state, ctx.type, ctx.id
        )
        return True
    return False


def move(ctx: Context, order: Order, state: str, note: str) -> None:
    order.state = state
    order.updated_at = now_iso()
    ctx.store.add(
        OrderHistory(
            order_id=order.id,
            at=order.updated_at,
            state=state,
            event_type=ctx.type,
            event_id=ctx.id,
            note=note,
        )
    )


def cancel(ctx: Context, order: Order, reason: CancelReason, detail: str) -> Reply:
    order.reason, order.detail = reason, detail
    move(ctx, order, CANCELLED, detail)
    ORDERS.labels(state="cancelled").inc()
    ctx.logger.info("order %s cancelled: %s", order.id, detail)
    return keyed(
        OrderCancelled(
            order_id=order.id,
            customer=Customer.model_validate(order.customer),
            items=[LineItem.model_validate(item) for item in order.items],
            reason=reason,
            detail=detail,
        )
    )


@fn.on(InventoryRejected)
def out_of_stock(event: InventoryRejected, ctx: Context) -> Reply | OrderCancelled | None:
    order = find(ctx, event.order_id)
    if order is None:
        # Nothing is held for an order that was never reserved: nothing to undo.
        ctx.logger.warning("inventory rejected unknown order %s; ignored", event.order_id)
        return None
    if is_final(ctx, order):
        return None
    short = ", ".join(
        f"{s.sku} (requested {s.requested}, available {s.available})"
        if s.known
        else f"{s.sku} (unknown SKU)"
        for s in event.shortages
    )
    return cancel(ctx, order, "out_of_stock", f"out of stock: {short}")


@fn.on(PaymentDeclined)
def declined(event: PaymentDeclined, ctx: Context) -> Reply | OrderCancelled | None:
    order = find(ctx, event.order_id)
    if order is None:
        # Inventory releases on payment.declined itself, and no money was taken.
        ctx.logger.warning("payment declined for unknown order %s; ignored", event.order_id)
        return None
    if is_final(ctx, order):
        return None
    order.amount_cents = event.amount_cents
    return cancel(ctx, order, "payment_declined", f"payment declined: {event.message}")


@fn.on(PaymentAuthorized)
def authorized(event: PaymentAuthorized, ctx: Context) -> Reply | OrderConfirmed | None:
    order = find(ctx, event.order_id)
    if order is None:
        # Money was authorized for an order nobody knows: a person must void it.
        raise DeadLetter(
            f"payment {event.authorization_id} authorized {event.amount_cents} cents for "
            f"unknown order {event.order_id}; void the authorization"
        )
    if is_final(ctx, order):
        return None
    order.amount_cents = event.amount_cents
    move(ctx, order, CONFIRMED, f"payment {event.authorization_id} authorized")
    ORDERS.labels(state="confirmed").inc()
    ctx.logger.info("order %s confirmed", order.id)
    return keyed(
        OrderConfirmed(
            order_id=order.id,
            customer=Customer.model_validate(order.customer),
            items=[LineItem.model_validate(item) for item in order.items],
            amount_cents=event.amount_cents,
            currency=event.currency,
        )
    )


# --------------------------------------------------------------------------- samples

# The contract suite delivers samples to an empty store, where no order exists: results that
# hold nothing for an unknown order are acknowledged and logged.
fn.example(samples.inventory_rejected("example-1", {"VINYL": 1}))
fn.example(samples.payment_declined("example-2", 1250))

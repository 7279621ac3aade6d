"""inventory: stock per SKU; reserves a whole order or rejects it, and compensates.

- ``order.created`` → reserve every line in one transaction, reply ``inventory.reserved``; or
  reserve nothing and reply ``inventory.rejected`` naming the short SKUs (unknown SKUs are short).
- ``payment.declined`` / ``order.cancelled`` → release the reservation (compensation).
- ``order.confirmed`` → the reservation becomes sold.

Stock is seeded from ``stock.json`` (or ``INVENTORY_STOCK_FILE``) the first time it is used:
SKUs missing from the table are inserted, existing ones are never reset. For every SKU
``available + reserved + sold == seed`` holds; a CHECK constraint makes the database refuse
any transaction that would break it.

Each order has one row in ``inventory_orders`` whose state only moves forward
(RESERVED → SOLD | RELEASED; REJECTED and a RELEASED tombstone are final), so a duplicate or
late event with a new id changes nothing and is logged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import NonNegativeInt, TypeAdapter, ValidationError
from sqlalchemy import CheckConstraint, ForeignKey, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cascade import Context, DeadLetter, Function, HttpContext, Reply
from cascade.http import problem_response
from functions.shop import samples
from functions.shop.events import (
    InventoryRejected,
    InventoryReserved,
    LineItem,
    OrderCancelled,
    OrderConfirmed,
    OrderCreated,
    PaymentDeclined,
    Shortage,
    Sku,
    keyed,
)

RESERVED, REJECTED, RELEASED, SOLD = "RESERVED", "REJECTED", "RELEASED", "SOLD"


def load_seed(path: Path) -> dict[str, int]:
    """The seed stock ``{sku: quantity}`` from a JSON file; ValueError says what is wrong."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return TypeAdapter(dict[Sku, NonNegativeInt]).validate_python(raw)
    except (OSError, ValueError, ValidationError) as exc:
        raise ValueError(f"inventory stock file {path}: {exc}") from None


SEED: Mapping[str, int] = load_seed(
    Path(os.environ.get("INVENTORY_STOCK_FILE") or Path(__file__).with_name("stock.json"))
)


class Base(DeclarativeBase):
    pass


class Stock(Base):
    __tablename__ = "inventory_stock"
    __table_args__ = (
        CheckConstraint(
            "available >= 0 AND reserved >= 0 AND sold >= 0", name="stock_not_negative"
        ),
        CheckConstraint("available + reserved + sold = seed", name="stock_conserved"),
    )

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    seed: Mapped[int]
    available: Mapped[int]
    reserved: Mapped[int] = mapped_column(default=0)
    sold: Mapped[int] = mapped_column(default=0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "seed": self.seed,
            "available": self.available,
            "reserved": self.reserved,
            "sold": self.sold,
        }


class OrderStock(Base):
    """What inventory did for one order."""

    __tablename__ = "inventory_orders"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))


class ReservedLine(Base):
    __tablename__ = "inventory_lines"

    order_id: Mapped[str] = mapped_column(ForeignKey(OrderStock.order_id), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey(Stock.sku), primary_key=True)
    quantity: Mapped[int]


fn = Function("inventory", metadata=Base.metadata)


# --------------------------------------------------------------------------- helpers


def ensure_seeded(session: Session) -> None:
    """Insert the seed rows of SKUs the table does not have yet (first start, new SKUs)."""
    if session.scalar(select(func.count()).select_from(Stock)) == len(SEED):
        return
    known = set(session.scalars(select(Stock.sku)))
    for sku, quantity in sorted(SEED.items()):
        if sku not in known:
            session.add(Stock(sku=sku, seed=quantity, available=quantity, reserved=0, sold=0))
    session.flush()


def locked_stock(session: Session, skus: list[str]) -> dict[str, Stock]:
    """Stock rows of ``skus``, locked for this transaction in SKU order (no deadlocks)."""
    rows = session.scalars(
        select(Stock).where(Stock.sku.in_(skus)).order_by(Stock.sku).with_for_update()
    )
    return {row.sku: row for row in rows}


def merged(items: list[LineItem]) -> dict[str, int]:
    """Quantities per SKU (an order may name a SKU on several lines)."""
    wanted: dict[str, int] = {}
    for item in items:
        wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
    return dict(sorted(wanted.items()))


def reserved_lines(session: Session, order_id: str) -> list[ReservedLine]:
    return list(session.scalars(select(ReservedLine).where(ReservedLine.order_id == order_id)))


# --------------------------------------------------------------------------- handlers


@fn.on(OrderCreated)
def reserve(
    event: OrderCreated, ctx: Context
) -> Reply | InventoryReserved | InventoryRejected | None:
    session = ctx.store
    ensure_seeded(session)
    done = session.get(OrderStock, event.order_id, with_for_update=True)
    if done is not None:
        ctx.logger.warning(
            "order %s is already %s here; ignoring order.created %s",
            event.order_id,
            done.state,
            ctx.id,
        )
        return None
    wanted = merged(event.items)
    stock = locked_stock(session, list(wanted))
    shortages = [
        Shortage(
            sku=sku,
            requested=quantity,
            available=stock[sku].available if sku in stock else 0,
            known=sku in stock,
        )
        for sku, quantity in wanted.items()
        if sku not in stock or stock[sku].available < quantity
    ]
    if shortages:
        session.add(OrderStock(order_id=event.order_id, state=REJECTED))
        ctx.logger.info(
            "order %s rejected: short of %s", event.order_id, ", ".join(s.sku for s in shortages)
        )
        return keyed(InventoryRejected(order_id=event.order_id, shortages=shortages))
    session.add(OrderStock(order_id=event.order_id, state=RESERVED))
    session.flush()
    for sku, quantity in wanted.items():
        stock[sku].available -= quantity
        stock[sku].reserved += quantity
        session.add(ReservedLine(order_id=event.order_id, sku=sku, quantity=quantity))
    ctx.logger.info("order %s reserved: %s", event.order_id, wanted)
    return keyed(
        InventoryReserved(order_id=event.order_id, customer=event.customer, items=event.items)
    )


def release(ctx: Context, order_id: str, cause: str) -> None:
    """Compensation: give a reservation back to available stock (idempotent)."""
    session = ctx.store
    done = session.get(OrderStock, order_id, with_for_update=True)
    if done is None:
        # Remember the release, so a late order.created for this order reserves nothing.
        session.add(OrderStock(order_id=order_id, state=RELEASED))
        ctx.logger.warning("%s for order %s, which holds no reservation here", cause, order_id)
        return
    if done.state != RESERVED:
        ctx.logger.info("%s for order %s: nothing to release (%s)", cause, order_id, done.state)
        return
    lines = reserved_lines(session, order_id)
    stock = locked_stock(session, [line.sku for line in lines])
    for line in lines:
        stock[line.sku].reserved -= line.quantity
        stock[line.sku].available += line.quantity
    done.state = RELEASED
    ctx.logger.info("order %s released (%s)", order_id, cause)


@fn.on(PaymentDeclined)
def release_declined(event: PaymentDeclined, ctx: Context) -> None:
    release(ctx, event.order_id, "payment declined")


@fn.on(OrderCancelled)
def release_cancelled(event: OrderCancelled, ctx: Context) -> None:
    release(ctx, event.order_id, "order cancelled")


@fn.on(OrderConfirmed)
def sell(event: OrderConfirmed, ctx: Context) -> None:
    session = ctx.store
    done = session.get(OrderStock, event.order_id, with_for_update=True)
    if done is not None and done.state == SOLD:
        ctx.logger.info("order %s is already sold; ignoring %s", event.order_id, ctx.id)
        return
    if done is None or done.state != RESERVED:
        # Sold without stock held for it: an oversell that a person has to resolve.
        state = "no reservation" if done is None else done.state
        raise DeadLetter(
            f"order {event.order_id} was confirmed but its stock is not reserved here ({state})"
        )
    lines = reserved_lines(session, event.order_id)
    stock = locked_stock(session, [line.sku for line in lines])
    for line in lines:
        stock[line.sku].reserved -= line.quantity
        stock[line.sku].sold += line.quantity
    done.state = SOLD
    ctx.logger.info("order %s sold", event.order_id)


# --------------------------------------------------------------------------- read API


@fn.route("/stock")
def list_stock(ctx: HttpContext) -> dict[str, Any]:
    """Every SKU with its counters, and whether the stock invariant holds for all of them."""
    ensure_seeded(ctx.store)
    rows = ctx.store.scalars(select(Stock).order_by(Stock.sku)).all()
    return {
        "skus": [row.as_dict() for row in rows],
        "conserved": all(r.available + r.reserved + r.sold == r.seed for r in rows),
    }


@fn.route("/stock/<sku>")
def one_sku(ctx: HttpContext, sku: str) -> Any:
    ensure_seeded(ctx.store)
    row = ctx.store.get(Stock, sku)
    if row is None:
        return problem_response(404, f"no SKU {sku!r} in stock")
    return row.as_dict()


@fn.route("/reservations/<order_id>")
def one_reservation(ctx: HttpContext, order_id: str) -> Any:
    done = ctx.store.get(OrderStock, order_id)
    if done is None:
        return problem_response(404, f"inventory has seen no order {order_id!r}")
    lines = reserved_lines(ctx.store, order_id)
    return {
        "order_id": order_id,
        "state": done.state,
        "lines": [{"sku": line.sku, "quantity": line.quantity} for line in lines],
    }


# --------------------------------------------------------------------------- samples

# Delivered in this order to a fresh store by the contract suite; each one succeeds.
fn.example(samples.order_created("example-1", {"MUG": 2}))
fn.example(samples.order_confirmed("example-1", {"MUG": 2}))
fn.example(samples.order_created("example-2", {"NO-SUCH-SKU": 1}))
fn.example(samples.order_created("example-3", {"POSTER": 1}))
fn.example(samples.payment_declined("example-3", 900))
fn.example(samples.order_cancelled("example-4", {"TSHIRT": 1}))

"""payment: authorizes reserved orders against a simulated gateway, with fault injection.

- ``inventory.reserved`` → price the items (functions/shop/prices.py), apply the gateway rules
  (functions/payment/gateway.py) and reply ``payment.authorized`` or ``payment.declined``.
  One decision per order: a later event for a decided order changes nothing and is logged.
- Faults (functions/payment/faults.py): a share of gateway calls answer 503 or hang, chosen
  deterministically; ``GET /faults`` shows the setting, ``PUT /faults`` changes it for every
  worker, ``DELETE /faults`` goes back to the environment's defaults.
- ``GET /payments/<order_id>`` shows the decision.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cascade import Context, DeadLetter, Function, HttpContext, Reply, Retry
from cascade.http import problem_response, read_json
from functions.payment.faults import Faults, ledger_for
from functions.payment.gateway import GatewayRules
from functions.shop import samples
from functions.shop.clock import now_iso
from functions.shop.events import (
    CURRENCY,
    Customer,
    InventoryReserved,
    PaymentAuthorized,
    PaymentDeclined,
    keyed,
)
from functions.shop.prices import UnknownPrice, amount_cents

# Checked at import, i.e. when the server starts: a bad variable stops it with a clear message.
Faults.from_env()
GatewayRules.from_env()

sleep = time.sleep  # tests replace it to hang without waiting


class Base(DeclarativeBase):
    pass


class Payment(Base):
    """The one decision taken for an order."""

    __tablename__ = "payment_decisions"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # AUTHORIZED | DECLINED
    amount_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    authorization_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(String(300))
    decided_at: Mapped[str] = mapped_column(String(40))


class FaultSetting(Base):
    """The runtime override of the fault-injection defaults (one row, id 1)."""

    __tablename__ = "payment_faults"

    id: Mapped[int] = mapped_column(primary_key=True)
    rate: Mapped[float]
    mode: Mapped[str] = mapped_column(String(8))
    hang_seconds: Mapped[float]
    seed: Mapped[int]
    updated_at: Mapped[str] = mapped_column(String(40))


fn = Function("payment", metadata=Base.metadata)


def current_faults(session: Session) -> tuple[Faults, FaultSetting | None]:
    """The effective setting: the stored override, else the environment's defaults."""
    row = session.get(FaultSetting, 1)
    if row is None:
        return Faults.from_env(), None
    stored = Faults.model_validate(
        {"rate": row.rate, "mode": row.mode, "hang_seconds": row.hang_seconds, "seed": row.seed}
    )
    return stored, row


def inject_fault(ctx: Context) -> None:
    """Fail or hang this gateway call when the fault setting says so."""
    session = ctx.store
    faults, _ = current_faults(session)
    if faults.rate <= 0:
        return
    bind = session.get_bind()
    attempt = ledger_for(bind.engine).next_attempt(ctx.source, ctx.id)
    if not faults.decides_fault(ctx.source, ctx.id, attempt):
        ctx.logger.info("gateway call for %s succeeds (delivery %d)", ctx.id, attempt)
        return
    if faults.mode == "error":
        ctx.logger.warning("injected gateway error for %s (delivery %d)", ctx.id, attempt)
        raise Retry(reason=f"injected gateway fault: 503 on delivery {attempt}")
    ctx.logger.warning(
        "injected gateway hang of %.1fs for %s (delivery %d)", faults.hang_seconds, ctx.id, attempt
    )
    sleep(faults.hang_seconds)


@fn.on(InventoryReserved)
def authorize(
    event: InventoryReserved, ctx: Context
) -> Reply | PaymentAuthorized | PaymentDeclined | None:
    session = ctx.store
    done = session.get(Payment, event.order_id, with_for_update=True)
    if done is not None:
        ctx.logger.warning(
            "order %s was already %s; ignoring %s", event.order_id, done.status, ctx.id
        )
        return None
    inject_fault(ctx)
    try:
        amount = amount_cents(event.items)
    except UnknownPrice as exc:
        raise DeadLetter(
            f"order {event.order_id}: {exc}; add it to the price list, then replay"
        ) from None
    decline = GatewayRules.from_env().decide(event.customer.id, amount)
    decided_at = now_iso()
    if decline is not None:
        session.add(
            Payment(
                order_id=event.order_id,
                status="DECLINED",
                amount_cents=amount,
                currency=CURRENCY,
                reason=decline.reason,
                message=decline.message,
                decided_at=decided_at,
            )
        )
        ctx.logger.info("order %s declined: %s", event.order_id, decline.message)
        return keyed(
            PaymentDeclined(
                order_id=event.order_id,
                amount_cents=amount,
                reason=decline.reason,
                message=decline.message,
            )
        )
    authorization = f"auth-{uuid.uuid4().hex[:16]}"
    session.add(
        Payment(
            order_id=event.order_id,
            status="AUTHORIZED",
            amount_cents=amount,
            currency=CURRENCY,
            authorization_id=authorization,
            decided_at=decided_at,
        )
    )
    ctx.logger.info("order %s authorized: %d cents", event.order_id, amount)
    return keyed(
        PaymentAuthorized(
            order_id=event.order_id,
            customer=event.customer,
            items=event.items,
            amount_cents=amount,
            authorization_id=authorization,
        )
    )


# --------------------------------------------------------------------------- HTTP


def faults_document(session: Session) -> dict[str, Any]:
    faults, row = current_faults(session)
    return {
        **faults.model_dump(),
        "origin": "environment" if row is None else "api",
        "updated_at": None if row is None else row.updated_at,
    }


@fn.route("/faults")
def get_faults(ctx: HttpContext) -> dict[str, Any]:
    return faults_document(ctx.store)


@fn.route("/faults", methods=["PUT"], admin=True)
def put_faults(ctx: HttpContext) -> dict[str, Any]:
    """Replace the setting; fields left out take the environment's defaults."""
    given = read_json(ctx.request, Faults, "fault setting")
    faults = Faults.from_env().model_copy(update=given.model_dump(exclude_unset=True))
    row = ctx.store.get(FaultSetting, 1, with_for_update=True)
    if row is None:
        row = FaultSetting(id=1)
        ctx.store.add(row)
    row.rate, row.mode, row.hang_seconds, row.seed = (
        faults.rate,
        faults.mode,
        faults.hang_seconds,
        faults.seed,
    )
    row.updated_at = now_iso()
    ctx.store.flush()
    ctx.logger.warning("fault injection set to %s", faults.model_dump())
    return faults_document(ctx.store)


@fn.route("/faults", methods=["DELETE"], admin=True)
def reset_faults(ctx: HttpContext) -> dict[str, Any]:
    row = ctx.store.get(FaultSetting, 1)
    if row is not None:
        ctx.store.delete(row)
        ctx.store.flush()
    ctx.logger.warning("fault injection back to the environment's defaults")
    return faults_document(ctx.store)


@fn.route("/payments/<order_id>")
def get_payment(ctx: HttpContext, order_id: str) -> Any:
    row = ctx.store.get(Payment, order_id)
    if row is None:
        return problem_response(404, f"no payment decision for order {order_id!r}")
    return {
        "order_id": row.order_id,
        "status": row.status,
        "amount_cents": row.amount_cents,
        "currency": row.currency,
        "authorization_id": row.authorization_id,
        "reason": row.reason,
        "message": row.message,
        "decided_at": row.decided_at,
    }


# --------------------------------------------------------------------------- samples

fn.example(samples.inventory_reserved("example-1", {"MUG": 2, "POSTER": 1}))
fn.example(
    samples.inventory_reserved(
        "example-2", {"MUG": 1}, Customer(id="cust-blocked", email="blocked@example.com")
    )
)
fn.example(samples.inventory_reserved("example-3", {"LAPTOP": 1}))

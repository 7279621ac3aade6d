"""The order function's tables: orders and their history."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["FINAL_STATES", "Base", "Order", "OrderHistory"]

PENDING, CONFIRMED, CANCELLED = "PENDING", "CONFIRMED", "CANCELLED"
FINAL_STATES = frozenset({CONFIRMED, CANCELLED})


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    customer: Mapped[dict[str, Any]] = mapped_column(JSON)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    currency: Mapped[str] = mapped_column(String(3))
    amount_cents: Mapped[int | None]
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    # Idempotency-Key of the POST that created it, and a hash of that request's order.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(40), index=True)
    updated_at: Mapped[str] = mapped_column(String(40))


class OrderHistory(Base):
    """One row per state change, with the event that caused it."""

    __tablename__ = "order_history"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey(Order.id), index=True)
    at: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str | None] = mapped_column(String(200))
    event_id: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text)

"""notification: one email per final order (``order.confirmed`` or ``order.cancelled``).

Delivery is an ``.eml`` file in ``NOTIFICATION_OUTBOX`` (default ``.cascade/outbox``) or SMTP
when ``SMTP_URL`` is set (functions/notification/mailer.py). ``GET /notifications/<order_id>``
shows what was sent.

Exactly one email per order: the order's row in ``notification_sent`` is inserted (and flushed,
which takes the row's unique-key lock) *before* sending, and commits with the event. So a
duplicate or concurrent delivery finds the row, or waits for it, and sends nothing. A failed
send rolls the row back (Retry; 5xx SMTP answers go to the dead-letter sink instead).

The one window left: the process dies after the message left and before the commit. The event
is then delivered again and the email sent again, with the same Message-ID
(``<order-<id>@domain>``) so mail software can drop the copy; in outbox mode the second copy
replaces the first file, so the folder still holds one file per order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cascade import Context, DeadLetter, Function, HttpContext, Retry
from cascade.http import problem_response
from functions.notification.mailer import (
    MailSettings,
    PermanentMailError,
    TransientMailError,
    compose,
    deliver,
)
from functions.shop import samples
from functions.shop.clock import now_iso
from functions.shop.events import OrderCancelled, OrderConfirmed

MailSettings.from_env()  # a bad SMTP_URL stops the server at start, with the reason

RETRY_AFTER_SECONDS = 5.0


class Base(DeclarativeBase):
    pass


class Notification(Base):
    __tablename__ = "notification_sent"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # confirmed | cancelled
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(Text)
    delivered_to: Mapped[str] = mapped_column(Text)
    event_id: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[str] = mapped_column(String(40))


fn = Function("notification", metadata=Base.metadata)


def notify(ctx: Context, event: OrderConfirmed | OrderCancelled, kind: str) -> None:
    session = ctx.store
    done = session.get(Notification, event.order_id)
    if done is not None:
        ctx.logger.info(
            "order %s was already notified (%s, %s); no second email for %s",
            event.order_id,
            done.kind,
            done.sent_at,
            ctx.id,
        )
        return
    settings = MailSettings.from_env()
    message = compose(event, settings)
    row = Notification(
        order_id=event.order_id,
        kind=kind,
        recipient=event.customer.email,
        subject=str(message["Subject"]),
        message_id=str(message["Message-ID"]),
        delivered_to="",
        event_id=ctx.id,
        sent_at="",
    )
    session.add(row)
    try:
        session.flush()  # claim the order before anything leaves
    except IntegrityError:
        # Another delivery for this order is sending right now (PostgreSQL waits for it here).
        raise Retry(RETRY_AFTER_SECONDS, f"order {event.order_id} is being notified") from None
    try:
        row.delivered_to = deliver(message, event.order_id, settings)
    except PermanentMailError as exc:
        raise DeadLetter(f"email for order {event.order_id} refused: {exc}") from None
    except TransientMailError as exc:
        raise Retry(RETRY_AFTER_SECONDS, f"email for order {event.order_id}: {exc}") from None
    row.sent_at = now_iso()
    ctx.logger.info(
        "emailed %s about order %s (%s) via %s",
        row.recipient,
        event.order_id,
        kind,
        row.delivered_to,
    )


@fn.on(OrderConfirmed)
def confirmed(event: OrderConfirmed, ctx: Context) -> None:
    notify(ctx, event, "confirmed")


@fn.on(OrderCancelled)
def cancelled(event: OrderCancelled, ctx: Context) -> None:
    notify(ctx, event, "cancelled")


def document(row: Notification) -> dict[str, Any]:
    return {
        "order_id": row.order_id,
        "kind": row.kind,
        "recipient": row.recipient,
        "subject": row.subject,
        "message_id": row.message_id,
        "delivered_to": row.delivered_to,
        "event_id": row.event_id,
        "sent_at": row.sent_at,
    }


@fn.route("/notifications/<order_id>")
def get_notification(ctx: HttpContext, order_id: str) -> Any:
    row = ctx.store.get(Notification, order_id)
    if row is None:
        return problem_response(404, f"no email was sent for order {order_id!r}")
    return document(row)


fn.example(samples.order_confirmed("example-1", {"MUG": 2}))
fn.example(samples.order_cancelled("example-2", {"VINYL": 1}))

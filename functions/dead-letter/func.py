"""dead-letter: the shop's dead-letter sink, a parking lot an operator inspects and replays from.

Sink: every Trigger's ``deadLetterSink`` is this Service at ``/dead-letters``, so dead-lettered
events arrive as ``POST /dead-letters``, a CloudEvents endpoint of its own served by a
catch-all handler (``@fn.on_any(path="/dead-letters")``): it takes an event of *any* type
(binary or structured; data of any content type, JSON or not), stores it with the Knative error
extensions (``knativeerrordest``, ``knativeerrorcode``, ``knativeerrordata`` and ``reason``,
which the broker makes from the subscriber's ``Kne-Reason`` header) and answers 204. A sink
must not refuse a type or data it does not know (the broker drops what the sink refuses); the
typed handlers at ``POST /`` (order outcomes, below) are a separate endpoint.

A dead letter is one (source, id, knativeerrordest): the same event failing at two Triggers
is two entries, and a repeated delivery of one entry updates it (``arrivals`` counts them).

Read API for ``cascade dlq``:

- ``GET /dead-letters[?partitionkey=&order_id=&type=&limit=]`` → newest first: id, type,
  source, event id, the event's partitionkey, order id, error code, reason, dest, time, replay
  count, and the order's final state if known (the API of ``cascade.dead_letters``, plus the
  shop's order fields).
- ``GET /dead-letters/<id>`` → one, with the original event (attributes and data) and the
  decoded ``knativeerrordata``.
- ``POST /dead-letters/<id>/replayed`` (admin) → count a replay (the CLI replays by posting the
  original event to ``knativeerrordest``).

Events: ``order.confirmed`` / ``order.cancelled`` record each order's final state, shown next to
its dead letters, so an operator sees which parked events are moot before replaying them.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from sqlalchemy import JSON, LargeBinary, String, Text, UniqueConstraint, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cascade import CloudEvent, Context, Function, HttpContext
from cascade.http import fail, limit_arg
from functions.shop import samples
from functions.shop.clock import now_iso
from functions.shop.events import OrderCancelled, OrderConfirmed

# Added by the broker when it dead-letters an event (semantics §4.2); not part of the original.
ERROR_EXTENSIONS: Final = ("knativeerrordest", "knativeerrorcode", "knativeerrordata", "reason")
MAX_LIST: Final = 500


class Base(DeclarativeBase):
    pass


class DeadLetterRecord(Base):
    __tablename__ = "dead_letters"
    __table_args__ = (UniqueConstraint("source", "event_id", "dest", name="dead_letter_once"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(Text)
    event_id: Mapped[str] = mapped_column(Text)
    dest: Mapped[str] = mapped_column(Text)  # "" when the event came without knativeerrordest
    type: Mapped[str] = mapped_column(Text)
    order_id: Mapped[str | None] = mapped_column(Text, index=True)
    error_code: Mapped[str | None] = mapped_column(Text)
    error_data: Mapped[str | None] = mapped_column(Text)  # base64, as received
    reason: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, str]] = mapped_column(JSON)  # the original event's
    data: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[str] = mapped_column(String(40))
    last_received_at: Mapped[str] = mapped_column(String(40))
    arrivals: Mapped[int] = mapped_column(default=1)
    replay_count: Mapped[int] = mapped_column(default=0)
    last_replayed_at: Mapped[str | None] = mapped_column(String(40))


class OrderOutcome(Base):
    """The final state of an order, as announced by order.confirmed / order.cancelled."""

    __tablename__ = "dead_letter_order_outcomes"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[str] = mapped_column(String(40))


fn = Function("dead-letter", metadata=Base.metadata)

# For the dashboards and alerts (k8s/dashboards, k8s/prometheus-rules.yaml): what arrives, and
# what waits for an operator (read from the store at each scrape, so every pod agrees).
RECEIVED = fn.metrics.counter(
    "cascade_dead_letters_received", "Dead-lettered deliveries received, by event type.", ["type"]
)


@fn.metrics.gauge(
    "cascade_dead_letters_waiting", "Dead letters never replayed, by event type.", ["type"]
)
def waiting(session: Session) -> dict[tuple[str, ...], float]:
    # Every type ever dead-lettered, 0 once all are replayed: a drop to 0 shows on a graph.
    unreplayed = func.sum(case((DeadLetterRecord.replay_count == 0, 1), else_=0))
    rows = session.execute(
        select(DeadLetterRecord.type, unreplayed).group_by(DeadLetterRecord.type)
    )
    return {(event_type,): float(count or 0) for event_type, count in rows}


@fn.metrics.gauge(
    "cascade_dead_letters_oldest_age_seconds",
    "Age of the oldest dead letter never replayed (0 when none waits).",
)
def oldest_age(session: Session) -> float:
    oldest = session.scalar(
        select(func.min(DeadLetterRecord.received_at)).where(DeadLetterRecord.replay_count == 0)
    )
    if oldest is None:
        return 0.0
    received = datetime.fromisoformat(oldest.replace("Z", "+00:00"))
    return max(0.0, (datetime.now(UTC) - received).total_seconds())


# --------------------------------------------------------------------------- the sink


def order_id_of(message: CloudEvent) -> str | None:
    if message.partitionkey:
        return message.partitionkey
    if message.is_json:
        try:
            document = message.json()
        except ValueError:
            return None
        if isinstance(document, dict) and isinstance(document.get("order_id"), str):
            return str(document["order_id"])
    return None


# Every arrival is stored, even the same event again: dedupe would swallow a second failure
# of one event at another Trigger, and `arrivals` counts repeats.
@fn.on_any(path="/dead-letters", idempotent=False)
def receive(message: CloudEvent, ctx: Context) -> None:
    received = message.attributes
    original = {k: v for k, v in received.items() if k not in ERROR_EXTENSIONS}
    now = now_iso()
    session = ctx.store
    insert = (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert
    errors = {
        "error_code": received.get("knativeerrorcode"),
        "error_data": received.get("knativeerrordata"),
        "reason": received.get("reason"),
    }
    table = DeadLetterRecord.__table__
    statement = (
        insert(table)
        .values(
            source=message.source,
            event_id=message.id,
            dest=received.get("knativeerrordest", ""),
            type=message.type,
            order_id=order_id_of(message),
            attributes=original,
            data=message.data,
            received_at=now,
            last_received_at=now,
            arrivals=1,
            replay_count=0,
            **errors,
        )
        .on_conflict_do_update(
            index_elements=[table.c.source, table.c.event_id, table.c.dest],
            set_={**errors, "last_received_at": now, "arrivals": table.c.arrivals + 1},
        )
    )
    session.execute(statement)
    RECEIVED.labels(type=message.type).inc()
    ctx.logger.warning(
        "dead letter: %s %s from %s failed at %s (%s%s)",
        message.type,
        message.id,
        message.source,
        received.get("knativeerrordest", "an unknown destination"),
        received.get("knativeerrorcode", "no response"),
        f": {received['reason']}" if "reason" in received else "",
    )


# --------------------------------------------------------------------------- read API


def outcomes(session: Session, order_ids: set[str]) -> dict[str, OrderOutcome]:
    if not order_ids:
        return {}
    rows = session.scalars(select(OrderOutcome).where(OrderOutcome.order_id.in_(order_ids)))
    return {row.order_id: row for row in rows}


def outcome_of(session: Session, row: DeadLetterRecord) -> OrderOutcome | None:
    return session.get(OrderOutcome, row.order_id) if row.order_id else None


def summary(row: DeadLetterRecord, outcome: OrderOutcome | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "source": row.source,
        "event_id": row.event_id,
        "order_id": row.order_id,
        "partitionkey": row.attributes.get("partitionkey"),
        "error_code": row.error_code,
        "reason": row.reason,
        "dest": row.dest or None,
        "replayable": bool(row.dest),
        "time": row.received_at,
        "last_time": row.last_received_at,
        "arrivals": row.arrivals,
        "replay_count": row.replay_count,
        "last_replayed_at": row.last_replayed_at,
        "order_state": outcome.state if outcome else None,
    }


def decoded_error_data(encoded: str | None) -> dict[str, Any] | None:
    """``knativeerrordata`` is base64 of the first 1024 bytes of the failed response's body."""
    if encoded is None:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return {"base64": encoded, "text": None, "json": None, "error": "not valid base64"}
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    return {"base64": encoded, "text": text, "json": parsed}


def event_document(row: DeadLetterRecord) -> dict[str, Any]:
    """The original event: its attributes, ``data_base64`` (the exact bytes, for replay) and
    ``data`` for reading (parsed JSON, text, or None when it is neither)."""
    stored = CloudEvent(row.attributes, row.data)
    content_type = stored.datacontenttype
    readable: Any = None
    if row.data and stored.is_json:
        try:
            readable = stored.json()
        except ValueError:
            readable = None
    elif row.data and (content_type or "").startswith("text/"):
        readable = row.data.decode("utf-8", errors="replace")
    return {
        "attributes": row.attributes,
        "data": readable,
        "data_base64": base64.b64encode(row.data).decode("ascii") if row.data else None,
    }


def found(session: Session, dead_letter_id: int) -> DeadLetterRecord:
    row = session.get(DeadLetterRecord, dead_letter_id)
    if row is None:
        fail(404, f"no dead letter {dead_letter_id}")
    return row


@fn.route("/dead-letters")
def list_dead_letters(ctx: HttpContext) -> Any:
    args = ctx.request.args
    limit = limit_arg(ctx.request, 100, MAX_LIST)
    query = select(DeadLetterRecord).order_by(DeadLetterRecord.id.desc()).limit(limit)
    if "order_id" in args:
        query = query.where(DeadLetterRecord.order_id == args["order_id"])
    if "partitionkey" in args:
        key = DeadLetterRecord.attributes["partitionkey"].as_string()
        query = query.where(key == args["partitionkey"])
    if "type" in args:
        query = query.where(DeadLetterRecord.type == args["type"])
    rows = list(ctx.store.scalars(query))
    known = outcomes(ctx.store, {row.order_id for row in rows if row.order_id})
    return {
        "dead_letters": [summary(row, known.get(row.order_id or "")) for row in rows],
    }


@fn.route("/dead-letters/<int:dead_letter_id>")
def get_dead_letter(ctx: HttpContext, dead_letter_id: int) -> Any:
    row = found(ctx.store, dead_letter_id)
    return {
        **summary(row, outcome_of(ctx.store, row)),
        "error_data": decoded_error_data(row.error_data),
        "event": event_document(row),
    }


@fn.route("/dead-letters/<int:dead_letter_id>/replayed", methods=["POST"], admin=True)
def mark_replayed(ctx: HttpContext, dead_letter_id: int) -> Any:
    row = ctx.store.get(DeadLetterRecord, dead_letter_id, with_for_update=True)
    if row is None:
        fail(404, f"no dead letter {dead_letter_id}")
    row.replay_count += 1
    row.last_replayed_at = now_iso()
    ctx.logger.info("dead letter %d replayed (%d times)", row.id, row.replay_count)
    ctx.store.flush()
    return summary(row, outcome_of(ctx.store, row))


# --------------------------------------------------------------------------- order outcomes


def record_outcome(ctx: Context, order_id: str, state: str, detail: str | None) -> None:
    row = ctx.store.get(OrderOutcome, order_id, with_for_update=True)
    if row is None:
        ctx.store.add(OrderOutcome(order_id=order_id, state=state, detail=detail, at=now_iso()))
    elif row.state != state:
        ctx.logger.warning(
            "order %s was announced %s earlier and now %s; keeping the first",
            order_id,
            row.state,
            state,
        )


@fn.on(OrderConfirmed)
def order_confirmed(event: OrderConfirmed, ctx: Context) -> None:
    record_outcome(ctx, event.order_id, "CONFIRMED", None)


@fn.on(OrderCancelled)
def order_cancelled(event: OrderCancelled, ctx: Context) -> None:
    record_outcome(ctx, event.order_id, "CANCELLED", event.detail)


fn.example(samples.order_confirmed("example-1", {"MUG": 1}))
fn.example(samples.order_cancelled("example-2", {"VINYL": 1}))

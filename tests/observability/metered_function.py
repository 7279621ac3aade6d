"""A function with its own counter and gauge, for the metrics API tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from cascade import Context, Drop, Event, Function, HttpContext, Retry


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "metered_rows"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    action: Mapped[str]


class Ping(Event, type="com.example.observability.ping"):
    action: str = "ok"


fn = Function("metered", metadata=Base.metadata)
HITS = fn.metrics.counter("obs_hits", "Pings that did their work.", ["action"])
PLAIN = fn.metrics.counter("obs_plain_total", "A counter without labels.")


@fn.metrics.gauge("obs_rows", "Rows in the store, by action.", ["action"])
def rows(session: Session) -> dict[tuple[str, ...], float]:
    counts = session.execute(select(Row.action, func.count()).group_by(Row.action))
    return {(action,): float(count) for action, count in counts}


@fn.metrics.gauge("obs_broken", "A gauge whose query fails.")
def broken(session: Session) -> float:
    raise RuntimeError("this gauge is broken on purpose")


@fn.on(Ping)
def ping(event: Ping, ctx: Context) -> None:
    HITS.labels(action=event.action).inc()
    PLAIN.inc()
    ctx.store.add(Row(action=event.action))
    if event.action == "retry":
        raise Retry(reason="try again")
    if event.action == "drop":
        raise Drop("not wanted")
    if event.action == "boom":
        raise RuntimeError("boom")


@fn.route("/hits", methods=["POST"])
def hit(ctx: HttpContext) -> Any:
    HITS.labels("route").inc(2)
    ctx.store.add(Row(action="route"))
    if ctx.request.args.get("fail"):
        raise RuntimeError("the view failed after counting")
    return {"ok": True}, 201

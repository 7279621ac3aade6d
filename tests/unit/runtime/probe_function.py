"""A function whose behaviour each event chooses, for runtime tests (loaded by path only)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Literal

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cascade import Context, DeadLetter, Drop, Event, Function, Reply, Retry

Action = Literal[
    "reply",
    "none",
    "drop",
    "retry",
    "retry_no_after",
    "dead",
    "boom",
    "bad_return",
    "reply_options",
    "slow",
    "publish",
]


class Command(Event, type="com.example.probe.command"):
    action: Action = "reply"
    key: str = "k"
    seconds: float = 0.0
    marker: str | None = None  # "slow": file created once the handler is running


class Done(Event, type="com.example.probe.done"):
    key: str
    effects: int


class Unhandled(Event, type="com.example.probe.unhandled"):
    pass


class Base(DeclarativeBase):
    pass


class Effect(Base):
    __tablename__ = "probe_effects"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


fn = Function("probe", metadata=Base.metadata)
calls: list[str] = []  # handler invocations in this process, for assertions
calls_lock = threading.Lock()


@fn.on(Command)
def handle(event: Command, ctx: Context) -> Done | Reply | None:
    with calls_lock:
        calls.append(ctx.id)
    if event.marker:  # before touching the store, whose write lock serialises handlers
        Path(event.marker).write_text(str(os.getpid()))
    row = ctx.store.get(Effect, event.key)
    if row is None:
        row = Effect(key=event.key, count=0)
        ctx.store.add(row)
    row.count += 1
    ctx.store.flush()  # effects reach the database before any outcome is raised
    if event.action == "slow":
        time.sleep(event.seconds)
    if event.action == "none":
        return None
    if event.action == "drop":
        raise Drop("not interesting")
    if event.action == "retry":
        raise Retry(after=2.5, reason="downstream busy")
    if event.action == "retry_no_after":
        raise Retry()
    if event.action == "dead":
        raise DeadLetter("order\nunknown: é")
    if event.action == "boom":
        raise RuntimeError("secret internal detail")
    if event.action == "bad_return":
        return {"not": "an event"}  # type: ignore[return-value]
    if event.action == "publish":
        ctx.publisher.publish(Done(key=event.key, effects=row.count), partitionkey=event.key)
        return None
    done = Done(key=event.key, effects=row.count)
    if event.action == "reply_options":
        return Reply(done, subject="s-1", partitionkey="pk-reply", extensions={"tenant": "t1"})
    return done


fn.example(Command(action="reply", key="example"))

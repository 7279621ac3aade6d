"""A function with every lifecycle hook; each hook appends a line to $LIFECYCLE_LOG (pid,
what), so a test can see which process ran what and when."""

from __future__ import annotations

import os
from pathlib import Path

from cascade import Event, Function, LifecycleContext

fn = Function("lifecycle")
READY = {"value": True}


class Ping(Event, type="com.example.lifecycle.ping"):
    n: int


def note(what: str) -> None:
    with Path(os.environ["LIFECYCLE_LOG"]).open("a") as log:
        log.write(f"{os.getpid()} {what}\n")


@fn.on_start
def first(ctx: LifecycleContext) -> None:
    note(f"start {ctx.function}")


@fn.on_start
def second() -> None:
    note("start second")


@fn.on_stop
def stop(ctx: LifecycleContext) -> None:
    note("stop")


@fn.readiness
def ready() -> tuple[bool, str]:
    return READY["value"], "the cache is cold"


@fn.on(Ping)
def ping(event: Ping) -> None:
    return None

"""Replies to a loop with the next loop, forever."""

from __future__ import annotations

from tests.unit.testing.relay.contracts import Loop

from cascade import Function

fn = Function("looper")


@fn.on(Loop)
def again(event: Loop) -> Loop:
    return Loop(n=event.n + 1)

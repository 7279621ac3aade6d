"""Takes pongs and answers nothing (204)."""

from __future__ import annotations

from tests.unit.testing.relay.contracts import Pong

from cascade import Function

fn = Function("recorder")


@fn.on(Pong)
def record(event: Pong) -> None:
    return None

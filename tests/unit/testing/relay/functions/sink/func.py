"""The dead-letter sink: accepts the pings that could not be delivered."""

from __future__ import annotations

from tests.unit.testing.relay.contracts import Ping

from cascade import Function

fn = Function("sink")


@fn.on(Ping)
def park(event: Ping) -> None:
    return None

"""The events of the relay app, a tiny system the Chain tests run (shared by its functions)."""

from __future__ import annotations

from cascade import Event


class Ping(Event, type="com.example.relay.ping"):
    """Asks the ponger for a pong; ``mode`` says how it answers (ok, retry, reject)."""

    key: str
    n: int
    mode: str = "ok"


class Pong(Event, type="com.example.relay.pong"):
    """The ponger's reply to a ping."""

    key: str
    n: int


class Loop(Event, type="com.example.relay.loop"):
    """The looper answers a loop with a loop: a reply loop, on purpose."""

    n: int

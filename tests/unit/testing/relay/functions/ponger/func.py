"""Answers a ping with a pong, a retry or a dead letter; publishes pings from a route."""

from __future__ import annotations

from typing import Any

from tests.unit.testing.relay.contracts import Ping, Pong

from cascade import Context, DeadLetter, Function, HttpContext, Reply, Retry

fn = Function("ponger")


@fn.on(Ping)
def pong(event: Ping, ctx: Context) -> Reply:
    if event.mode == "retry":
        raise Retry()
    if event.mode == "reject":
        raise DeadLetter(f"ping {event.n} was rejected")
    return Reply(Pong(key=event.key, n=event.n), partitionkey=event.key)


@fn.route("/garbage", methods=["POST"])
def garbage(ctx: HttpContext) -> dict[str, Any]:
    """200 with a JSON body that is not a CloudEvent: a malformed reply for the broker."""
    return {"ok": True}


@fn.route("/pings", methods=["POST"])
def publish_pings(ctx: HttpContext) -> dict[str, Any]:
    """Publishes ``count`` pings of one key to K_SINK (the chain's broker)."""
    document = ctx.request.get_json()
    for n in range(int(document["count"])):
        ctx.publisher.publish(Ping(key=document["key"], n=n), partitionkey=document["key"])
    return {"published": int(document["count"])}

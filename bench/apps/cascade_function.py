"""The Cascade function under test: typed handlers only, as a user would write them.

``com.example.bench.ping`` is validated into a pydantic model and acknowledged (204);
``com.example.bench.echo`` is validated the same way and answered with a reply event (200).
Tracing, metrics and (unless ``CASCADE_IDEMPOTENCY=false``) dedupe come from the runtime.
"""

from __future__ import annotations

from bench._wrk import PING_TYPE, REPLY_TYPE
from cascade import Event, Function


class OrderFields(Event):
    order_id: str
    customer: str
    sku: str
    quantity: int
    note: str = ""


class OrderPinged(OrderFields, type=PING_TYPE):
    pass


class OrderEchoRequested(OrderFields, type=REPLY_TYPE):
    pass


class OrderEchoed(Event, type="com.example.bench.echoed"):
    order_id: str
    quantity: int


fn = Function("bench")


@fn.on(OrderPinged)
def acknowledge(event: OrderPinged) -> None:
    return None


@fn.on(OrderEchoRequested)
def echo(event: OrderEchoRequested) -> OrderEchoed:
    return OrderEchoed(order_id=event.order_id, quantity=event.quantity)

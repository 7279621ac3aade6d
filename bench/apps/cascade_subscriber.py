"""The broker benchmark's Cascade subscriber: a trivial function, as a user would write it.

One handler, a small pydantic model, 204. Served by ``cascade serve`` (gunicorn gthread
workers) like any function. To let the harness check that nothing is lost, each worker
process appends one line per delivery to its own file in ``$BENCH_DELIVERY_DIR``:
``<ce-id> <benchsentus> <receipt, µs since the epoch>`` (see ``bench/_deliveries.py``). One
unbuffered ``write`` of ~40 bytes per event, exact across workers, nothing to flush.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench._deliveries import DELIVERY_DIR_ENV, delivery_line, worker_file
from bench._wrk import PING_TYPE
from cascade import Context, Event, Function


class OrderPinged(Event, type=PING_TYPE):
    order_id: str
    customer: str
    sku: str
    quantity: int
    note: str = ""


fn = Function("bench-subscriber", idempotent=False)

if not os.environ.get(DELIVERY_DIR_ENV):
    raise RuntimeError(f"set {DELIVERY_DIR_ENV} to the folder where deliveries are counted")
_DIRECTORY = Path(os.environ[DELIVERY_DIR_ENV])
_file: tuple[int, int] | None = None  # (pid, fd): opened in each worker, after the fork


def _fd() -> int:
    global _file
    pid = os.getpid()
    if _file is None or _file[0] != pid:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        _file = (pid, os.open(worker_file(_DIRECTORY), flags, 0o644))
    return _file[1]


@fn.on(OrderPinged)
def count(event: OrderPinged, ctx: Context) -> None:
    received_us = time.time_ns() // 1000
    os.write(_fd(), delivery_line(ctx.id, ctx.attributes.get("benchsentus"), received_us))

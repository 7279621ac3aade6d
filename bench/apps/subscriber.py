"""The ceiling subscriber: bare aiohttp, one process, counting what it receives.

Every POST is answered 202 with no body. Per run (the ``ce-id`` prefix before the first ``-``)
it keeps the distinct ids, the duplicate count and, for each first delivery, the latency from
the event's ``ce-benchsentus`` send time (microseconds since the epoch, set by the load
generator) to its receipt here. ``GET /stats?run=ID`` returns them as JSON.
"""

from __future__ import annotations

import time

from aiohttp import web

from bench._deliveries import RunStats, run_of
from bench.apps._cmdline import port_from_argv

RUNS = web.AppKey("runs", dict[str, RunStats])


async def _receive(request: web.Request) -> web.Response:
    received_us = time.time_ns() // 1000
    await request.read()
    ce_id = request.headers.get("ce-id")
    if not ce_id:
        return web.Response(status=400, text="not a binary CloudEvent: no ce-id header")
    sent = request.headers.get("ce-benchsentus", "")
    sent_us = int(sent) if sent.isdigit() else None
    request.app[RUNS].setdefault(run_of(ce_id), RunStats()).record(ce_id, sent_us, received_us)
    return web.Response(status=202)


async def _stats(request: web.Request) -> web.Response:
    run = request.query.get("run", "")
    stats = request.app[RUNS].get(run, RunStats())
    return web.json_response(stats.summary())


def make_app() -> web.Application:
    app = web.Application()
    app[RUNS] = {}
    app.router.add_get("/stats", _stats)
    app.router.add_post("/{tail:.*}", _receive)
    return app


def main() -> None:
    port = port_from_argv("python -m bench.apps.subscriber")
    web.run_app(make_app(), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()

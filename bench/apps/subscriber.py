"""A fast trivial subscriber (aiohttp, one process) that counts what it receives.

Every POST is answered 202 with no body. Per run (the ``ce-id`` prefix before the first ``-``)
it keeps the distinct ids, the duplicate count and, for each first delivery, the latency from
the event's ``ce-benchsentus`` send time (microseconds since the epoch, set by the load
generator) to its receipt here. ``GET /stats?run=ID`` returns them as JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web

from bench.apps._cmdline import port_from_argv


@dataclass
class RunStats:
    ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    latencies_us: list[int] = field(default_factory=list)
    first_sent_us: int = 0
    last_received_us: int = 0

    def record(self, ce_id: str, sent_us: int | None, received_us: int) -> None:
        if ce_id in self.ids:
            self.duplicates += 1
            return
        self.ids.add(ce_id)
        self.last_received_us = max(self.last_received_us, received_us)
        if sent_us is not None:
            self.latencies_us.append(received_us - sent_us)
            if not self.first_sent_us or sent_us < self.first_sent_us:
                self.first_sent_us = sent_us

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.latencies_us)

        def pct(p: float) -> float:
            if not ordered:
                return 0.0
            return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] / 1000.0

        return {
            "unique": len(self.ids),
            "duplicates": self.duplicates,
            "first_sent_us": self.first_sent_us,
            "last_received_us": self.last_received_us,
            "latency_ms": {"p50": pct(50), "p99": pct(99), "max": pct(100)},
        }


RUNS = web.AppKey("runs", dict[str, RunStats])


async def _receive(request: web.Request) -> web.Response:
    received_us = time.time_ns() // 1000
    await request.read()
    ce_id = request.headers.get("ce-id")
    if not ce_id:
        return web.Response(status=400, text="not a binary CloudEvent: no ce-id header")
    sent = request.headers.get("ce-benchsentus", "")
    sent_us = int(sent) if sent.isdigit() else None
    run = ce_id.partition("-")[0]
    request.app[RUNS].setdefault(run, RunStats()).record(ce_id, sent_us, received_us)
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

"""An OTLP/HTTP receiver that drops everything: tracing is exported for real, then discarded.

``GET /stats`` answers ``{"requests": N, "bytes": M}`` so the harness can check that the
servers under test really export spans.
"""

from __future__ import annotations

from aiohttp import web

from bench.apps._cmdline import port_from_argv

_REQUESTS = web.AppKey("requests", list[int])  # [count, bytes]


async def _export(request: web.Request) -> web.Response:
    body = await request.read()
    counters = request.app[_REQUESTS]
    counters[0] += 1
    counters[1] += len(body)
    # An empty protobuf message is a valid Export*ServiceResponse: nothing rejected.
    return web.Response(status=200, body=b"", content_type="application/x-protobuf")


async def _stats(request: web.Request) -> web.Response:
    count, size = request.app[_REQUESTS]
    return web.json_response({"requests": count, "bytes": size})


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_REQUESTS] = [0, 0]
    app.router.add_post("/v1/{signal}", _export)
    app.router.add_get("/stats", _stats)
    return app


def main() -> None:
    port = port_from_argv("python -m bench.apps.otlp_sink")
    web.run_app(make_app(), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()

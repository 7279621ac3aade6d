"""The console's HTTP routes (aiohttp): its pages, its JSON API and the live delivery stream.

Pages (one HTML shell; the script draws the view from the path):
``/`` topology, ``/live`` deliveries, ``/chains/<partitionkey>`` one chain,
``/dead-letters[/<id>]``, ``/traces/<trace id>``.

API (JSON; problems as ``application/problem+json``):

- ``GET /api/topology``: the graph drawn from the manifests.
- ``GET /api/stats``: per Trigger delivered/retried/dead-lettered/dropped counters and lag.
- ``GET /api/deliveries/stream``: Server-Sent Events, one ``delivery`` event per entry of the
  broker's activity feed (``Last-Event-ID`` resumes).
- ``GET /api/chains/<partitionkey>``, ``GET /api/traces/<id>``, ``GET /api/search?q=``.
- ``GET /api/dead-letters[?order_id=]``, ``GET /api/dead-letters/<id>``,
  ``POST /api/dead-letters/<id>/replay`` with ``{"dry_run": true}`` then
  ``{"dry_run": false, "confirmation": "<code from the dry run>"}`` (token required).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from cascade.console.chain import TRACE_ID, bad_key, chain_events, resolve, waterfall
from cascade.console.dead_letters import DeadLetterError, DeadLetters
from cascade.console.security import Guard, problem
from cascade.console.topology import stats_from_metrics
from cascade.console.upstream import Broker, UpstreamError
from cascade.runner.display import activity_cells
from cascade.traces.store import SpanStore

__all__ = ["ConsoleState", "MAX_BODY_BYTES", "MAX_STREAMS", "make_app"]

MAX_BODY_BYTES: Final = 4096
MAX_STREAMS: Final = 16
_BACKLOG: Final = 200
_STATIC: Final = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "views.js": "text/javascript",
    "dom.js": "text/javascript",
    "graph.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
_PAGES: Final = re.compile(r"/(live|dead-letters(/[1-9][0-9]{0,17})?|traces/[0-9a-fA-F]{32})?\Z")
_REPLAY_KEYS: Final = frozenset({"dry_run", "confirmation"})


@dataclass
class ConsoleState:
    """What the handlers read from; filled by :class:`~cascade.console.server.ConsoleServer`."""

    guard: Guard
    graph: Mapping[str, Any]
    broker_url: str
    span_store: Path
    dead_letters: DeadLetters | None
    session: aiohttp.ClientSession | None = None
    streams: int = 0
    _store: SpanStore | None = field(default=None, repr=False)

    @property
    def broker(self) -> Broker:
        assert self.session is not None, "the console's client session starts with the app"
        return Broker(self.broker_url, self.session)

    def store(self) -> SpanStore | None:
        if self._store is None:
            try:
                self._store = SpanStore(self.span_store, readonly=True)
            except (FileNotFoundError, OSError):
                return None
        return self._store


_STATE: Final = web.AppKey("state", ConsoleState)


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


def _state(request: web.Request) -> ConsoleState:
    return request.app[_STATE]


async def _in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(function, *args, **kwargs)


# --- pages ---------------------------------------------------------------------------------


def _shell(token: str) -> str:
    template = resources.files("cascade.console").joinpath("static/index.html").read_text("utf-8")
    return template.replace("{{TOKEN}}", token)


async def page(request: web.Request) -> web.Response:
    path = request.path
    if path.startswith("/chains/"):
        reason = bad_key(request.match_info.get("key", ""))
        if reason is not None:
            return problem(400, "not a partitionkey", reason)
    elif not _PAGES.match(path):
        return problem(404, "no such page")
    return web.Response(text=_shell(_state(request).guard.token), content_type="text/html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _STATIC.get(name)
    if content_type is None:
        return problem(404, "no such file")
    body = resources.files("cascade.console").joinpath(f"static/{name}").read_bytes()
    return web.Response(body=body, content_type=content_type)


# --- topology and stats ----------------------------------------------------------------------


async def topology(request: web.Request) -> web.Response:
    return _json(_state(request).graph)


async def stats(request: web.Request) -> web.Response:
    try:
        text = await _state(request).broker.metrics()
    except UpstreamError as exc:
        return problem(502, "the broker did not answer", str(exc))
    return _json(stats_from_metrics(text))


# --- live deliveries -------------------------------------------------------------------------


def _delivery(entry: Mapping[str, Any]) -> dict[str, Any]:
    cells = activity_cells(entry)
    return {"entry": entry, "cells": cells.__dict__}


async def stream(request: web.Request) -> web.StreamResponse:
    """Relay the broker's activity feed as Server-Sent Events, one per delivery."""
    state = _state(request)
    after: int | None = None
    resume = request.headers.get("Last-Event-ID", "")
    if resume.isdigit() and len(resume) < 19:
        after = int(resume)
    if state.streams >= MAX_STREAMS:
        return problem(503, "too many live streams", f"at most {MAX_STREAMS} at once")
    state.streams += 1
    try:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        state.guard.secure(response)
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        try:
            async for entry in state.broker.follow(after, _BACKLOG):
                if entry is None:
                    await response.write(b": idle\n\n")
                    continue
                seq = entry.get("seq")
                head = f"id: {seq}\n".encode() if isinstance(seq, int) else b""
                data = orjson.dumps(_delivery(entry))
                await response.write(head + b"event: delivery\ndata: " + data + b"\n\n")
        except UpstreamError as exc:
            message = orjson.dumps({"detail": str(exc)})
            await response.write(b"event: upstream-error\ndata: " + message + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        return response
    finally:
        state.streams -= 1


async def deliveries(request: web.Request) -> web.Response:
    try:
        entries = await _state(request).broker.activity(_BACKLOG)
    except UpstreamError as exc:
        return problem(502, "the broker did not answer", str(exc))
    return _json({"deliveries": [_delivery(e) for e in entries]})


# --- chains, traces, search ----------------------------------------------------------------


async def chain(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    reason = bad_key(key)
    if reason is not None:
        return problem(400, "not a partitionkey", reason)
    state = _state(request)
    notes: list[str] = []
    try:
        entries = [e for e in await state.broker.activity() if e.get("partitionkey") == key]
    except UpstreamError as exc:
        entries, notes = [], [*notes, f"broker: {exc}"]
    dead: list[dict[str, Any]] = []
    if state.dead_letters is not None:
        try:
            dead = await _in_thread(state.dead_letters.list, key)
        except DeadLetterError as exc:
            notes.append(f"dead letters: {exc}")
    store = state.store()
    traces: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    if store is None:
        notes.append("no span store yet")
    else:
        traces, events = await _in_thread(_traces_of, store, key)
    return _json(
        {
            "partitionkey": key,
            "events": events,
            "deliveries": [_delivery(e) for e in entries],
            "dead_letters": dead,
            "traces": traces,
            "notes": notes,
        }
    )


def _traces_of(store: SpanStore, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    trace_ids = [t for t in store.traces_of(key) if key in store.conversations_of(t)]
    all_spans = []
    traces = []
    for trace_id in trace_ids:
        spans = store.trace(trace_id)
        if spans:
            all_spans.extend(spans)
            traces.append(waterfall(spans, store.linked_traces(trace_id)))
    return traces, chain_events(all_spans)


async def trace(request: web.Request) -> web.Response:
    trace_id = request.match_info["trace_id"]
    if not TRACE_ID.match(trace_id):
        return problem(400, "not a trace id", "a trace id is 32 hex digits")
    store = _state(request).store()
    spans = await _in_thread(store.trace, trace_id) if store is not None else []
    if store is None or not spans:
        return problem(404, "no such trace in the span store")
    linked = await _in_thread(store.linked_traces, trace_id)
    return _json(waterfall(spans, linked))


async def search(request: web.Request) -> web.Response:
    query = request.query.get("q", "")
    state = _state(request)
    try:
        entries = await state.broker.activity()
    except UpstreamError:
        entries = []
    found = await _in_thread(resolve, state.store(), query, entries)
    if found is None:
        return problem(
            404, "nothing found", "give an order id (or its first 8 characters) or a trace id"
        )
    return _json(found)


# --- dead letters ------------------------------------------------------------------------------


def _dead_letters(request: web.Request) -> DeadLetters | web.Response:
    dead_letters = _state(request).dead_letters
    if dead_letters is None:
        return problem(404, "no dead-letter function in this run")
    return dead_letters


def _dead_letter_target(request: web.Request) -> tuple[DeadLetters, int] | web.Response:
    """The dead letters and the id the path names, or the problem answer."""
    dead_letters = _dead_letters(request)
    if isinstance(dead_letters, web.Response):
        return dead_letters
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        return problem(400, "not a dead letter id", "ids are positive integers")
    return dead_letters, int(raw)


async def dead_letter_list(request: web.Request) -> web.Response:
    dead_letters = _dead_letters(request)
    if isinstance(dead_letters, web.Response):
        return dead_letters
    order_id = request.query.get("order_id") or None
    if order_id is not None and bad_key(order_id) is not None:
        return problem(400, "not an order id", str(bad_key(order_id)))
    try:
        entries = await _in_thread(dead_letters.list, order_id)
    except DeadLetterError as exc:
        return problem(502, "the dead-letter function did not answer", str(exc))
    return _json({"dead_letters": entries})


async def dead_letter_show(request: web.Request) -> web.Response:
    target = _dead_letter_target(request)
    if isinstance(target, web.Response):
        return target
    try:
        return _json(await _in_thread(target[0].show, target[1]))
    except DeadLetterError as exc:
        status = 404 if " 404" in str(exc) else 502
        return problem(status, "no such dead letter" if status == 404 else "failed", str(exc))


async def dead_letter_replay(request: web.Request) -> web.Response:
    target = _dead_letter_target(request)
    if isinstance(target, web.Response):
        return target
    dead_letters, dead_letter_id = target
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return problem(413, "body too large", f"at most {MAX_BODY_BYTES} bytes")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return problem(400, "body is not JSON", str(exc))
    if not isinstance(document, dict) or not set(document) <= _REPLAY_KEYS:
        return problem(400, "bad replay request", 'send {"dry_run": true} or the confirmation')
    dry_run = document.get("dry_run", True)
    confirmation = document.get("confirmation")
    if not isinstance(dry_run, bool) or not isinstance(confirmation, str | None):
        return problem(400, "bad replay request", "dry_run is a boolean, confirmation a string")
    if confirmation is not None and len(confirmation) > 64:
        return problem(400, "bad replay request", "that is not a confirmation code")
    try:
        answer = await _in_thread(
            dead_letters.replay, dead_letter_id, dry_run=dry_run, confirmation=confirmation
        )
    except DeadLetterError as exc:
        return problem(502, "the dead-letter function did not answer", str(exc))
    return _json(answer.__dict__, status=200 if answer.ok else 409)


# --- the app -------------------------------------------------------------------------------------


async def _not_found(request: web.Request) -> web.Response:
    return problem(404, "not found")


def make_app(state: ConsoleState) -> web.Application:
    app = web.Application(middlewares=[state.guard.middleware], client_max_size=MAX_BODY_BYTES)
    app[_STATE] = state

    async def session(app: web.Application) -> Any:
        state.session = aiohttp.ClientSession()
        yield
        await state.session.close()
        if state._store is not None:
            state._store.close()

    app.cleanup_ctx.append(session)
    routes = app.router
    for path in ("/", "/live", "/dead-letters", "/dead-letters/{id}", "/traces/{trace_id}"):
        routes.add_get(path, page)
    reads = {
        "/chains/{key:(?s:.+)}": page,
        "/static/{name}": static,
        "/api/topology": topology,
        "/api/stats": stats,
        "/api/deliveries": deliveries,
        "/api/deliveries/stream": stream,
        "/api/chains/{key:(?s:.+)}": chain,
        "/api/traces/{trace_id}": trace,
        "/api/search": search,
        "/api/dead-letters": dead_letter_list,
        "/api/dead-letters/{id}": dead_letter_show,
    }
    for path, handler in reads.items():
        routes.add_get(path, handler)
    routes.add_post("/api/dead-letters/{id}/replay", dead_letter_replay)
    routes.add_route("*", "/{tail:(?s:.*)}", _not_found)
    return app

"""A bounded, in-memory feed of delivery outcomes, served as NDJSON at ``GET /-/activity``.

Each finished delivery (and each failed attempt that will be retried) becomes one entry:
Trigger, event type, id, source, partition key, subscriber, attempt, outcome
(``delivered``, ``retried``, ``dead-lettered``, ``dropped``), HTTP status, latency and time.
``cascade run`` shows it as a live line per delivery and ``cascade tail`` follows it. The feed
is for people watching, not an audit log: it keeps the newest ``capacity`` entries and is lost
with the process (the Prometheus counters hold the totals).

HTTP (on the broker's admin port):

- ``GET /-/activity[?limit=N]``: the newest N entries (default 100), oldest first, one JSON
  object per line (``application/x-ndjson``).
- ``GET /-/activity?after=SEQ``: the entries after sequence number SEQ (to resume without gaps
  while they are still held).
- ``&follow=1``: keep the response open and stream new entries as they happen; a blank line
  every few seconds keeps idle connections alive. The stream ends when the broker stops.

Only the broker's event loop touches the feed. Recording is on the delivery hot path, so an
entry is kept as a plain tuple and only turned into an :class:`Activity` when someone reads it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Final

import orjson
from aiohttp import web

__all__ = ["OUTCOMES", "Activity", "ActivityFeed", "ActivityQuery", "parse_query"]

OUTCOMES: Final = ("delivered", "retried", "dead-lettered", "dropped")
DEFAULT_CAPACITY: Final = 2000
DEFAULT_LIMIT: Final = 100
HEARTBEAT_SECONDS: Final = 5.0
NDJSON: Final = "application/x-ndjson"


@dataclass(frozen=True, slots=True)
class Activity:
    """One delivery outcome. ``latency_ms`` is the last attempt's; ``elapsed_ms`` the whole
    delivery's, backoff included. ``status`` is None after a transport error (see ``error``)."""

    seq: int
    time: float  # seconds since the epoch; RFC 3339 (UTC, milliseconds) in JSON
    namespace: str
    trigger: str
    subscriber: str
    type: str | None
    id: str | None
    source: str | None
    partitionkey: str | None
    attempt: int
    outcome: str
    status: int | None
    error: str | None
    reason: str | None
    latency_ms: float
    elapsed_ms: float

    def to_json(self) -> bytes:
        document = asdict(self)
        stamp = datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds")
        document["time"] = stamp.replace("+00:00", "Z")
        return orjson.dumps(document)


@dataclass(frozen=True)
class ActivityQuery:
    limit: int = DEFAULT_LIMIT
    after: int | None = None
    follow: bool = False


# What record() keeps: seq, time, namespace, trigger, subscriber, the event's attributes (not
# copied: the broker never changes an event's attributes once built), attempt, outcome, status,
# error, reason, latency and elapsed seconds.
_Raw = tuple[
    int,
    float,
    str,
    str,
    str,
    Mapping[str, str],
    int,
    str,
    int | None,
    str | None,
    str | None,
    float,
    float,
]


def _build(raw: _Raw) -> Activity:
    seq, when, namespace, trigger, subscriber, attributes, attempt = raw[:7]
    outcome, status, error, reason, latency, elapsed = raw[7:]
    return Activity(
        seq=seq,
        time=when,
        namespace=namespace,
        trigger=trigger,
        subscriber=subscriber,
        type=attributes.get("type"),
        id=attributes.get("id"),
        source=attributes.get("source"),
        partitionkey=attributes.get("partitionkey"),
        attempt=attempt,
        outcome=outcome,
        status=status,
        error=error,
        reason=reason,
        latency_ms=round(latency * 1000, 3),
        elapsed_ms=round(elapsed * 1000, 3),
    )


_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off", "")


def parse_query(params: Mapping[str, str], capacity: int = DEFAULT_CAPACITY) -> ActivityQuery:
    """Read ``limit``, ``after`` and ``follow``; ValueError names the bad parameter."""
    unknown = sorted(set(params) - {"limit", "after", "follow"})
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}: use limit, after or follow")
    limit = DEFAULT_LIMIT
    if "limit" in params:
        limit = _integer(params["limit"], "limit")
        if not 0 <= limit <= capacity:
            raise ValueError(f"limit must be 0..{capacity}, got {limit}")
    after = None
    if "after" in params:
        after = _integer(params["after"], "after")
        if after < 0:
            raise ValueError(f"after must be >= 0, got {after}")
    follow = params.get("follow", "").strip().lower()
    if follow not in _TRUE + _FALSE:
        raise ValueError(f"follow must be 1 or 0, got {params['follow']!r}")
    return ActivityQuery(limit=limit, after=after, follow=follow in _TRUE)


def _integer(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


class ActivityFeed:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._entries: deque[_Raw] = deque(maxlen=capacity)
        self._seq = 0
        self._wakeup: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def closed(self) -> bool:
        return self._closed

    def record(
        self,
        *,
        namespace: str,
        trigger: str,
        subscriber: str,
        attributes: Mapping[str, str],
        attempt: int,
        outcome: str,
        status: int | None,
        error: str | None = None,
        reason: str | None = None,
        latency: float = 0.0,
        elapsed: float = 0.0,
    ) -> int:
        """Keep one outcome; returns its sequence number."""
        self._seq += 1
        self._entries.append(
            (
                self._seq,
                time.time(),
                namespace,
                trigger,
                subscriber,
                attributes,
                attempt,
                outcome,
                status,
                error,
                reason,
                latency,
                elapsed,
            )
        )
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)
        return self._seq

    def entries(self, query: ActivityQuery) -> list[Activity]:
        """Held entries after ``query.after``, else the newest ``query.limit``; oldest first.

        An ``after`` beyond the newest sequence number comes from a follower of an earlier
        broker process (numbers restart at 1): it gets every entry held.
        """
        if query.after is not None:
            return self._after(query.after if query.after <= self._seq else 0)
        if query.limit == 0:
            return []
        start = max(0, len(self._entries) - query.limit)
        return [_build(raw) for raw in itertools.islice(self._entries, start, None)]

    def _after(self, seq: int) -> list[Activity]:
        # Sequence numbers are consecutive in the deque, so the start is an index.
        if not self._entries:
            return []
        start = max(0, seq + 1 - self._entries[0][0])
        return [_build(raw) for raw in itertools.islice(self._entries, start, None)]

    async def wait(self, after: int, timeout: float) -> None:
        """Return once an entry newer than ``after`` exists, the feed closes, or on timeout."""
        if self._seq > after or self._closed:
            return
        if self._wakeup is None or self._wakeup.done():
            self._wakeup = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._wakeup), timeout)
        except TimeoutError:
            return

    def close(self) -> None:
        """End every follower's stream (the broker is stopping)."""
        self._closed = True
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """``GET /-/activity``: see the module docstring."""
        try:
            query = parse_query(request.query, self.capacity)
        except ValueError as exc:
            return web.Response(
                status=400,
                body=orjson.dumps({"title": "bad activity query", "detail": str(exc)}),
                content_type="application/problem+json",
            )
        backlog = self.entries(query)
        if not query.follow:
            body = b"".join(entry.to_json() + b"\n" for entry in backlog)
            return web.Response(body=body, content_type=NDJSON)
        response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache"})
        await response.prepare(request)
        last = self._seq  # everything up to here is in the backlog or was left out on purpose
        try:
            if backlog:
                await response.write(b"".join(entry.to_json() + b"\n" for entry in backlog))
            await self._stream(response, last)
        except ConnectionResetError:
            pass  # the follower went away
        return response

    async def _stream(self, response: web.StreamResponse, last: int) -> None:
        beat = time.monotonic() + HEARTBEAT_SECONDS
        while not self._closed:
            await self.wait(last, max(0.0, beat - time.monotonic()))
            fresh = self._after(last)
            if fresh:
                last = fresh[-1].seq
                await response.write(b"".join(entry.to_json() + b"\n" for entry in fresh))
                beat = time.monotonic() + HEARTBEAT_SECONDS
            elif time.monotonic() >= beat:
                await response.write(b"\n")
                beat = time.monotonic() + HEARTBEAT_SECONDS
        await response.write_eof()

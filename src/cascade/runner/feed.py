"""Read the broker's activity feed (``GET /-/activity``, NDJSON) over HTTP.

Used by ``cascade run`` (a thread printing one line per delivery) and ``cascade tail``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from cascade.http_client import streamed

__all__ = ["MAX_LINE_BYTES", "ActivityClient", "FeedError", "broker_origin"]

MAX_LINE_BYTES = 1024 * 1024  # one entry; the broker's are a few hundred bytes


class FeedError(Exception):
    """The broker answered something other than its activity feed."""


def broker_origin(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a broker URL; an ingress URL's path is ignored."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    return parts.scheme, parts.hostname, port


class ActivityClient:
    def __init__(self, broker_url: str, *, timeout: float = 15.0) -> None:
        self.scheme, self.host, self.port = broker_origin(broker_url)
        # The broker sends a blank line every few seconds, so a silent socket is a dead one.
        self.timeout = timeout

    def entries(
        self, *, follow: bool, after: int | None = None, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Entries oldest first; with ``follow``, until the broker ends the stream.

        Raises Unreachable when the broker cannot be reached, OSError or HTTPException when
        the stream breaks, FeedError for an unexpected answer.
        """
        query: dict[str, str] = {}
        if follow:
            query["follow"] = "1"
        if after is not None:
            query["after"] = str(after)
        if limit is not None:
            query["limit"] = str(limit)
        path = "/-/activity" + (f"?{urlencode(query)}" if query else "")
        url = f"{self.scheme}://{self.host}:{self.port}{path}"
        headers = {"Accept": "application/x-ndjson"}
        with streamed("GET", url, headers=headers, timeout=self.timeout) as response:
            if response.status != 200:
                body = response.read(2000).decode("utf-8", errors="replace").strip()
                raise FeedError(
                    f"GET {path} answered {response.status}"
                    + (f": {body}" if body else "")
                    + " (is this a cascade broker?)"
                )
            while True:
                line = response.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return
                if len(line) > MAX_LINE_BYTES:
                    raise FeedError(f"the activity feed sent a line over {MAX_LINE_BYTES} bytes")
                line = line.strip()
                if not line:
                    continue  # heartbeat
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise FeedError(f"the activity feed sent a non-JSON line: {exc}") from None
                if isinstance(entry, dict):
                    yield entry

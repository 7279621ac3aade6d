"""A small blocking HTTP client for the CLI commands (stdlib ``http.client``, one request each).

An answer's body is read up to :data:`MAX_ANSWER_BYTES` (64 MiB); a longer one is an error,
not a command that eats the machine's memory because a server (or whatever answers at that
URL) sends without end.
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["MAX_ANSWER_BYTES", "Answer", "Unreachable", "check_url", "request"]

MAX_ANSWER_BYTES = 64 * 1024 * 1024


class Unreachable(Exception):
    """No HTTP answer: refused, reset, timed out, unknown host."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def text(self, limit: int = 4000) -> str:
        shown = self.body[:limit].decode("utf-8", errors="replace")
        return shown + (" ..." if len(self.body) > limit else "")


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL, else ValueError saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an absolute http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    return url


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Answer:
    parts = urlsplit(check_url(url))
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(parts.hostname or "", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        body = response.read(MAX_ANSWER_BYTES + 1)
        response.close()  # a partial read leaves it open, holding the socket
        if len(body) > MAX_ANSWER_BYTES:
            raise Unreachable(f"{url} answered more than {MAX_ANSWER_BYTES} bytes; not read")
        return Answer(response.status, response.reason, tuple(response.getheaders()), body)
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"cannot reach {url}: {exc or type(exc).__name__}") from None
    finally:
        connection.close()

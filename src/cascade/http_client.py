"""The one small blocking HTTP client of the CLI, the runner and the trace receiver (stdlib
``http.client``): a request per call, a kept-alive connection for a stream of posts, or a
streamed answer read line by line.

The broker's deliveries use their own hand-tuned client (``cascade.broker.http.client``) and
functions publish through urllib3's pool (``cascade.publish``); everything else that talks HTTP
from a thread goes through here, so timeouts, URL checks and errors read the same everywhere.
Every failure to get an answer (refused, reset, timed out, a broken answer) is ``Unreachable``.
An answer's body is read up to :data:`MAX_ANSWER_BYTES` (64 MiB); a longer one is an error too,
not a command that eats the machine's memory because whatever answers at a URL sends without end.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "MAX_ANSWER_BYTES",
    "Answer",
    "KeptAlive",
    "Unreachable",
    "check_url",
    "request",
    "streamed",
]

MAX_ANSWER_BYTES = 64 * 1024 * 1024


class Unreachable(Exception):
    """No HTTP answer: refused, reset, timed out, unknown host, a broken answer."""


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


def _connect(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection to ``url``'s origin (not yet opened) and the path to ask for."""
    parts = urlsplit(check_url(url))
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return connection_type(parts.hostname or "", parts.port, timeout=timeout), path


def _answer(url: str, response: http.client.HTTPResponse) -> Answer:
    body = response.read(MAX_ANSWER_BYTES + 1)
    response.close()  # a partial read leaves it open, holding the socket
    if len(body) > MAX_ANSWER_BYTES:
        raise Unreachable(f"{url} answered more than {MAX_ANSWER_BYTES} bytes; not read")
    return Answer(response.status, response.reason, tuple(response.getheaders()), body)


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Answer:
    """One request on its own connection; the whole answer read."""
    connection, path = _connect(url, timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        return _answer(url, connection.getresponse())
    except (OSError, http.client.HTTPException) as exc:
        raise Unreachable(f"cannot reach {url}: {exc or type(exc).__name__}") from None
    finally:
        connection.close()


@contextmanager
def streamed(
    method: str, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 30.0
) -> Iterator[http.client.HTTPResponse]:
    """The answer before its body is read (``readline`` it); the connection closes after.

    Failing to connect or to get the answer's head raises Unreachable; errors while reading
    the body are the reader's (OSError, ``http.client.HTTPException``)."""
    connection, path = _connect(url, timeout)
    try:
        try:
            connection.request(method, path, headers=dict(headers or {}))
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"cannot reach {url}: {exc or type(exc).__name__}") from None
        try:
            yield response
        finally:
            response.close()
    finally:
        connection.close()


class KeptAlive:
    """Requests to one URL over one kept-alive connection, reopened after any failure.

    For a single thread that posts many times (the trace receiver forwarding exports)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        _, self._path = _connect(url, timeout)

    def request(
        self, method: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> Answer:
        if self._connection is None:
            self._connection, _ = _connect(self.url, self.timeout)
        try:
            self._connection.request(method, self._path, body=body, headers=dict(headers or {}))
            return _answer(self.url, self._connection.getresponse())
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Unreachable(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
        except Unreachable:  # an answer too long to read: the connection is mid-body
            self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

"""The ingress fast path: plain event POSTs answered without aiohttp's request machinery.

aiohttp's server costs the broker a task, a request, a payload stream and a response object per
event (about a quarter of the loop's CPU under load, measured with py-spy). This protocol takes
the one request the broker gets by the thousand, and only it: an HTTP/1.1 keep-alive ``POST`` to
a Broker path with one ``Content-Length`` (within ``--max-event-bytes``), no
``Transfer-Encoding``, ``Expect`` or upgrade, whose event :class:`Ingress` would store. Heads are
parsed by llhttp (httptools, C), the checks are the ingress's own, the event goes through the
same group commit and the 202 is written only once it is durable.

Anything else, from the first byte of the request on, is handed with the rest of the connection
to aiohttp's handler (:meth:`IngressServer.handler`), which answers it exactly as before: a bad
or refused event (400, 404, 503 ...), a probe, 405, a malformed head, ``100-continue``, chunked
bodies, OIDC (a broker with ``--oidc`` never takes the fast path), shutdown. The deadlines are
the same: a request head within ``--read-timeout`` of the connection's start or last answer
(else the connection is closed), its body within ``--read-timeout`` of the head (else 408).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Final, cast

import httptools
from aiohttp import web
from multidict import CIMultiDict

from cascade.broker.http.limits import CappedServer
from cascade.broker.ingress.receiver import (
    REASON_HEADER,
    STORE_FAILED,
    BrokerEndpoint,
    Ingress,
    PendingStore,
    broker_path,
)

__all__ = ["FastIngress", "IngressServer"]

# A head that has not ended within this many bytes goes to aiohttp, which applies its limits.
_MAX_FAST_HEAD: Final = 8192
_ACCEPTED: Final = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
_BODY_LATE: Final = "the body did not arrive within --read-timeout"


def _answer(status: int, reason: str, header: str) -> bytes:
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n{REASON_HEADER}: {header}\r\n"
    ).encode("latin-1")


class IngressServer(CappedServer):
    """The broker's HTTP server: new connections start on the fast path when one is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fast: FastIngress | None = None
        self.fast_connections: set[FastIngressProtocol] = set()

    def open_connections(self) -> int:
        return len(self._connections) + len(self.fast_connections)

    def __call__(self) -> Any:
        if self.fast is None or self.open_connections() >= self.max_connections:
            return super().__call__()  # aiohttp's handler, or the 503 of the connection cap
        return FastIngressProtocol(self, self.fast)

    def handler(self) -> asyncio.Protocol:
        """aiohttp's handler for a connection the fast path gives up."""
        return cast(asyncio.Protocol, web.Server.__call__(self))

    async def shutdown(self, timeout: float | None = None) -> None:
        for connection in list(self.fast_connections):
            connection.close()
        await super().shutdown(timeout)


class FastIngress:
    """What the fast path needs of the broker: the ingress checks and the deadlines."""

    def __init__(self, ingress: Ingress, *, max_event_bytes: int, read_timeout: float) -> None:
        self.ingress = ingress
        self.max_event_bytes = max_event_bytes
        self.read_timeout = read_timeout


class _Head:
    """llhttp's callbacks for one request head."""

    __slots__ = ("headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


class _Request:
    """A head the fast path takes: where it goes, its headers, where its body ends."""

    __slots__ = ("body_start", "end", "endpoint", "headers")

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        headers: CIMultiDict[str],
        body_start: int,
        end: int,
    ) -> None:
        self.endpoint = endpoint
        self.headers = headers
        self.body_start = body_start
        self.end = end


class FastIngressProtocol(asyncio.Protocol):
    """One connection: requests one at a time, in order; reading pauses while one is stored."""

    def __init__(self, server: IngressServer, fast: FastIngress) -> None:
        self._server = server
        self._fast = fast
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head = _Head()
        self._parser = httptools.HttpRequestParser(self._head)
        self._request: _Request | None = None  # head parsed, body still arriving
        self._storing = False
        self._handed_off = False
        self._eof = False
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)
        self._server.fast_connections.add(self)
        self._set_deadline()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._storing:
            self._serve()

    def eof_received(self) -> bool:
        # A sender that half-closes after its request still gets the answer, then the close.
        self._eof = True
        return self._storing

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.fast_connections.discard(self)
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- requests --

    def _serve(self) -> None:
        """Answer or hand off every complete request in the buffer, in order."""
        while self._buffer and not self._storing and not self._handed_off:
            request = self._request
            if request is None:
                request = self._read_head()
                if request is None:
                    return
            if len(self._buffer) < request.end:
                return  # the body is still arriving (its deadline runs from the head)
            body = bytes(self._buffer[request.body_start : request.end])
            event = self._fast.ingress.fast_event(request.headers, body)
            if event is None:
                self._hand_off()  # refused: aiohttp and Ingress.handle answer it as ever
                return
            try:
                self._parser.feed_data(body)  # the parser is then ready for the next head
            except httptools.HttpParserError:
                self._hand_off()
                return
            del self._buffer[: request.end]
            self._request = None
            self._storing = True
            self._deadline = None  # no deadline while the event is stored
            assert self._transport is not None
            self._transport.pause_reading()
            pending = self._fast.ingress.begin_store(request.endpoint, event, request.headers)
            pending.future.add_done_callback(functools.partial(self._stored, pending))

    def _read_head(self) -> _Request | None:
        """The next head if complete and fit for the fast path; else None (maybe handed off)."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_FAST_HEAD:
                self._hand_off()
            return None
        head = self._head
        head.url = b""
        head.headers = []
        try:
            self._parser.feed_data(bytes(self._buffer[: end + 4]))
        except httptools.HttpParserError:
            self._hand_off()
            return None
        request = self._fast_request(end + 4)
        if request is None:
            self._hand_off()
            return None
        if len(self._buffer) < request.end:
            self._request = request
            self._set_deadline()  # the body's own deadline
        return request

    def _fast_request(self, body_start: int) -> _Request | None:
        parser = self._parser
        if (
            parser.get_method() != b"POST"
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
            or parser.should_upgrade()
        ):
            return None
        try:
            path = self._head.url.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not path.startswith("/") or "?" in path or "%" in path or "#" in path:
            return None
        endpoint = self._fast.ingress.fast_endpoint(path)
        if endpoint is None:
            return None
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in self._head.headers:
            # As aiohttp decodes them: UTF-8, undecodable bytes kept as surrogate escapes.
            headers.add(
                name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")
            )
        lengths = headers.getall("Content-Length", ())
        if (
            len(lengths) != 1
            or not lengths[0].isascii()
            or not lengths[0].isdigit()
            or "Transfer-Encoding" in headers
            or "Expect" in headers
        ):
            return None
        length = int(lengths[0])
        if length > self._fast.max_event_bytes:
            return None
        return _Request(endpoint, headers, body_start, body_start + length)

    def _stored(self, pending: PendingStore, _: object) -> None:
        self._storing = False
        status = self._fast.ingress.end_store(pending)
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # the sender left; the event is stored (or not) all the same
        if status == 202:
            transport.write(_ACCEPTED)
        else:
            header = self._fast.ingress.note_rejection(status, STORE_FAILED, pending.path)
            transport.write(_answer(status, "Service Unavailable", header) + b"\r\n")
        if self._eof:
            transport.close()
            return
        self._set_deadline()  # the next head's deadline runs from this answer
        transport.resume_reading()
        self._serve()

    def _hand_off(self) -> None:
        """Give the connection, from the current request's first byte on, to aiohttp."""
        transport = self._transport
        assert transport is not None
        self._handed_off = True
        self.connection_lost(None)  # out of the fast path's count and timer
        handler = self._server.handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        transport.resume_reading()
        data, self._buffer = bytes(self._buffer), bytearray()
        if data:
            handler.data_received(data)

    # -- deadlines: one timer, moved lazily (most requests finish long before it fires) --

    def _set_deadline(self) -> None:
        self._deadline = self._loop.time() + self._fast.read_timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._handed_off:
            return
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        transport = self._transport
        if transport is None:
            return
        if self._request is not None:
            # A head came but not its body in time: 408, as Ingress.handle answers it.
            endpoint = self._request.endpoint
            path = broker_path(endpoint.namespace, endpoint.name)
            header = self._fast.ingress.note_rejection(408, _BODY_LATE, path)
            transport.write(_answer(408, "Request Timeout", header) + b"Connection: close\r\n\r\n")
        transport.close()

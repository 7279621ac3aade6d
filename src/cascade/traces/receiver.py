"""A small OTLP/HTTP trace receiver: ``POST /v1/traces`` (protobuf) into a :class:`SpanStore`.

``cascade run`` points every process's ``OTEL_EXPORTER_OTLP_ENDPOINT`` here. Answers follow
the OTLP/HTTP specification: 200 with an empty ``ExportTraceServiceResponse`` once the spans are
stored; 400 for a body that is not one; 413 over the size limit (:data:`MAX_BODY_BYTES`, 16 MiB,
for the body as sent and again for a gzip body once decompressed, so a small compressed body
cannot expand without bound); 415 for JSON (the Python SDK only sends protobuf); 404 for other
paths. ``Content-Encoding: gzip`` is accepted. A client gets :data:`READ_TIMEOUT_SECONDS` (10 s)
for each read of its request, so a trickling one cannot hold a thread for ever.

With ``forward_to`` (a full traces URL) every accepted body is also sent on, unchanged, to
another OTLP/HTTP endpoint (a collector, Jaeger) from a background thread; when that one is slow
or down, bodies beyond a bounded queue are dropped with a warning, never blocking the
exporters that feed this receiver.

The listening socket is bound by the constructor and served only after :meth:`start`, so a
process (``cascade run``) can learn the URL, start its children, and only then start threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import zlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from cascade.http_client import KeptAlive, Unreachable
from cascade.traces.store import SpanStore, spans_from_otlp

__all__ = ["MAX_BODY_BYTES", "READ_TIMEOUT_SECONDS", "TraceReceiver", "traces_url"]

_log = logging.getLogger("cascade.traces")
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
READ_TIMEOUT_SECONDS: Final = 10.0
_PROTOBUF: Final = "application/x-protobuf"
_FORWARD_QUEUE: Final = 1000
_FORWARD_TIMEOUT: Final = 10.0


def traces_url(endpoint: str) -> str:
    """The traces URL of an OTLP/HTTP base endpoint (``http://host:4318`` → ``.../v1/traces``),
    the way the SDK derives it from ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    return (
        endpoint
        if endpoint.rstrip("/").endswith("/v1/traces")
        else (endpoint.rstrip("/") + "/v1/traces")
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: TraceReceiver


class _TooLarge(ValueError):
    """The body is over :data:`MAX_BODY_BYTES` once decompressed."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: exporters reuse their connection
    timeout = READ_TIMEOUT_SECONDS  # per socket read: a trickling client is cut off
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        receiver = self.server.receiver
        if self.path.split("?", 1)[0] != "/v1/traces":
            self._drain_body()
            self._answer(HTTPStatus.NOT_FOUND, b"only /v1/traces is served here")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(HTTPStatus.LENGTH_REQUIRED, b"Content-Length is required", close=True)
            return
        if length < 0 or length > MAX_BODY_BYTES:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"body too large", close=True)
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True  # too slow: nothing to answer on a half-read request
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != _PROTOBUF:
            self._answer(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"send {_PROTOBUF} (OTLP/HTTP protobuf), not {content_type or 'nothing'}".encode(),
            )
            return
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        try:
            raw = _decode(body, encoding)
            spans = spans_from_otlp(raw)
        except _TooLarge as exc:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc).encode())
            return
        except ValueError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, str(exc).encode())
            return
        try:
            receiver.store.add(spans)
        except Exception:
            _log.exception("could not store %d spans", len(spans))
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, b"the span store failed")
            return
        receiver.received += len(spans)
        receiver.forward(body, content_type, encoding)
        # An empty ExportTraceServiceResponse serialises to zero bytes.
        self._answer(HTTPStatus.OK, b"", content_type=_PROTOBUF)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/health":
            self._answer(HTTPStatus.OK, b"ready")
        else:
            self._answer(HTTPStatus.NOT_FOUND, b"POST /v1/traces")

    def _drain_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)

    def _answer(
        self,
        status: HTTPStatus,
        body: bytes,
        *,
        content_type: str = "text/plain; charset=utf-8",
        close: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per export would drown everything else


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return _gunzip_bounded(body, MAX_BODY_BYTES)
    raise ValueError(f"Content-Encoding {encoding!r} is not supported (use gzip or none)")


def _gunzip_bounded(body: bytes, limit: int) -> bytes:
    """``gzip.decompress`` that stops past ``limit`` bytes of output (every member counted)."""
    out = bytearray()
    rest = body
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip header and trailer
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise ValueError(f"body is not valid gzip: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise _TooLarge(f"body is over {limit} bytes once decompressed")
        if not inflater.eof:
            raise ValueError("body is not valid gzip: truncated")
        rest = inflater.unused_data
    return bytes(out)


class TraceReceiver:
    """Receives spans on ``host`` (a free port when ``port`` is 0) into ``store``."""

    def __init__(
        self,
        store: SpanStore,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        forward_to: str | None = None,
    ) -> None:
        self.store = store
        self.received = 0
        self.forward_to = forward_to or None  # the full traces URL (see traces_url)
        self.dropped = 0
        self._server = _Server((host, port), _Handler, bind_and_activate=True)
        self._server.receiver = self
        self._threads: list[threading.Thread] = []
        self._queue: queue.Queue[tuple[bytes, str, str] | None] = queue.Queue(_FORWARD_QUEUE)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """The base URL to put in ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        host = str(self._server.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="otlp-receiver",
            daemon=True,
        )
        self._threads.append(serve)
        if self.forward_to is not None:
            self._threads.append(
                threading.Thread(target=self._forward_loop, name="otlp-forward", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop serving, send what waits to be forwarded (bounded), release the port."""
        if self._threads:
            self._server.shutdown()
        self._server.server_close()
        if self.forward_to is not None and self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    # --- forwarding -------------------------------------------------------------------------

    def forward(self, body: bytes, content_type: str, encoding: str) -> None:
        if self.forward_to is None:
            return
        try:
            self._queue.put_nowait((body, content_type, encoding))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                _log.warning(
                    "forwarding spans to %s falls behind: %d exports dropped (kept locally)",
                    self.forward_to,
                    self.dropped,
                )

    def _forward_loop(self) -> None:
        assert self.forward_to is not None
        collector = KeptAlive(self.forward_to, timeout=_FORWARD_TIMEOUT)
        failures = 0
        while True:
            item = self._queue.get()
            if item is None:
                break
            body, content_type, encoding = item
            headers = {"Content-Type": content_type}
            if encoding:
                headers["Content-Encoding"] = encoding
            try:
                answer = collector.request("POST", headers=headers, body=body)
                if answer.status >= 300:
                    raise Unreachable(f"HTTP {answer.status}")
                failures = 0
            except Unreachable as exc:
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    _log.warning(
                        "could not forward spans to %s (%d failures so far): %s",
                        self.forward_to,
                        failures,
                        exc,
                    )
        collector.close()

"""A scripted HTTP sink on 127.0.0.1 that records what it receives (for publisher tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from cascade.closing import ClosesOnExit
from tests.thread_server import QuietHandler, ThreadServer


class Sink(ClosesOnExit):
    """Answers POSTs with the scripted statuses in order (then 202), recording each request.

    ``hold``: every answer waits until that event is set (a sink that hangs); ``port``: listen
    there (e.g. a port that was closed until now).
    """

    def __init__(
        self,
        statuses: Iterable[int] = (),
        headers: dict[str, str] | None = None,
        *,
        hold: threading.Event | None = None,
        port: int = 0,
    ) -> None:
        self.statuses = list(statuses)
        self.extra_headers = headers or {}
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with sink._lock:
                    sink.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = sink.statuses.pop(0) if sink.statuses else 202
                if hold is not None:
                    hold.wait()
                self.send_response(status)
                for name, value in sink.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"nope")

        self._http = ThreadServer(Handler, port=port)
        self.url = f"{self._http.url}/ns/broker"

    def close(self) -> None:
        self._http.close()

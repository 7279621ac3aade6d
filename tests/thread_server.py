"""An HTTP server on a free 127.0.0.1 port, served from a daemon thread, for in-process fakes."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cascade.closing import ClosesOnExit


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps http.server's access log off the test output."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class ThreadServer(ClosesOnExit):
    """Serves ``handler`` until ``close()``; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], poll_interval: float = 0.02, port: int = 0
    ) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

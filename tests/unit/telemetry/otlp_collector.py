"""A tiny OTLP/HTTP receiver on 127.0.0.1 that keeps every request it gets."""

from __future__ import annotations

from tests.thread_server import QuietHandler, ThreadServer


class Collector:
    """Answers 200 to every POST and records (headers, body)."""

    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        collector = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.bodies.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._http = ThreadServer(Handler)
        self.url = f"{self._http.url}/v1/traces"

    def close(self) -> None:
        self._http.close()

"""A scriptable HTTP server on a free 127.0.0.1 port, standing in for the broker, a function
or the dead-letter service in the CLI tests."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from cascade.closing import ClosesOnExit
from tests.thread_server import QuietHandler, ThreadServer


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lowercased names
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


Route = Reply | Callable[[Seen], Reply]


class FakeServer(ClosesOnExit):
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.seen: list[Seen] = []
        server = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    parts.path,
                    parts.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                server.seen.append(seen)
                route = server.routes.get((self.command, parts.path), Reply(404, body=b"no route"))
                reply = route(seen) if callable(route) else route
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = _serve  # http.server looks handlers up by these names

        self._http = ThreadServer(Handler, poll_interval=0.05)
        self.url = self._http.url

    def route(self, method: str, path: str, reply: Route) -> None:
        self.routes[(method, path)] = reply

    def requests_to(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    def close(self) -> None:
        self._http.close()


def _fake_server() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


fake = pytest.fixture(_fake_server, name="fake")
fake2 = pytest.fixture(_fake_server, name="fake2")  # a second one, for two-service commands


@pytest.fixture
def closed_port_url() -> str:
    """A URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"

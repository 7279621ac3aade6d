"""Issue 10, row 9 (function side): one connection trickling its request headers must not stop
a one-worker function from answering its health checks (the runtime's gthread preset)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import Server, serve

pytestmark = pytest.mark.slow

GREETER = Path(__file__).resolve().parents[2] / "examples" / "greeter"


@contextlib.contextmanager
def trickling(port: int, connections: int = 1) -> Iterator[list[socket.socket]]:
    """``connections`` clients that send a request line, then one header byte every 0.2 s."""
    stop = threading.Event()
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(connections)]

    def trickle(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(b"POST / HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
            while not stop.wait(0.2):
                sock.sendall(b"x")

    threads = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in sockets]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)  # the slow clients get their worker (or thread) first
        yield sockets
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        for sock in sockets:
            sock.close()


def test_health_checks_answer_while_a_client_trickles_headers(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "1", target=GREETER) as server, trickling(server.port):
        for _ in range(5):
            # Generous against a slow machine; a blocked worker never answers while trickled.
            answer = server.request("GET", "/health/readiness", timeout=10)
            assert answer.status == 200
        greeting = _greet(server)
        assert greeting == 200


def _greet(server: Server) -> int:
    answer = server.request(
        "POST",
        "/",
        b'{"name": "Ada"}',
        {
            "ce-specversion": "1.0",
            "ce-id": "slow-1",
            "ce-source": "/hostile",
            "ce-type": "com.example.greeting.requested",
            "Content-Type": "application/json",
        },
        timeout=10,
    )
    return answer.status

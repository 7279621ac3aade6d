"""Issue 10, row 9 (broker side): clients that trickle their request head or body, or open
more connections than the broker takes, while real events keep being accepted and delivered."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.harness import (
    BrokerProcess,
    Subscriber,
    broker_manifest,
    trigger_manifest,
    wait_for_event,
    write_manifests,
)

pytestmark = pytest.mark.slow

DEFAULT_READ_TIMEOUT = 10.0  # cascade broker --read-timeout's default


@pytest.fixture(scope="module")
def subscriber() -> Iterator[Subscriber]:
    recorder = Subscriber()
    yield recorder
    recorder.close()


def start(subscriber: Subscriber, workdir: Path, *args: str) -> BrokerProcess:
    manifests = write_manifests(
        workdir / "manifests.yaml",
        [broker_manifest(), trigger_manifest("all", subscriber.url("/all"))],
    )
    return BrokerProcess(manifests, workdir, args=args).start()


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the broker has closed (or reset) the connection."""
    sock.setblocking(False)
    try:
        sock.recv(65536)  # readable: an answer or EOF, the broker is done with it
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


@contextlib.contextmanager
def tricklers(port: int, count: int, prefix: bytes) -> Iterator[list[socket.socket]]:
    """``count`` connections that send ``prefix``, then one byte every 0.5 s."""
    stop = threading.Event()
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]

    def trickle() -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.sendall(prefix)
        while not stop.wait(0.5):
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.sendall(b"x")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield sockets
    finally:
        stop.set()
        thread.join(timeout=5)
        for sock in sockets:
            sock.close()


def test_trickled_heads_are_cut_off_and_events_still_flow(
    subscriber: Subscriber, tmp_path: Path
) -> None:
    broker = start(subscriber, tmp_path)
    try:
        head = b"POST /conformance/default HTTP/1.1\r\nHost: b\r\nX-Slow: "
        with tricklers(broker.port, 20, head) as slow:
            broker.publish("while-trickled-1")
            wait_for_event(subscriber, "/all", "while-trickled-1")
            deadline = time.monotonic() + DEFAULT_READ_TIMEOUT * 3  # generous on a slow box
            while time.monotonic() < deadline and not all(closed_by_peer(s) for s in slow):
                time.sleep(0.5)
            still_open = sum(not closed_by_peer(s) for s in slow)
            assert still_open == 0, f"{still_open}/20 trickling connections still open"
            broker.publish("while-trickled-2")
            wait_for_event(subscriber, "/all", "while-trickled-2")
    finally:
        broker.stop()


def test_a_trickled_body_is_408_and_nothing_is_stored(
    subscriber: Subscriber, tmp_path: Path
) -> None:
    broker = start(subscriber, tmp_path, "--read-timeout", "1")
    try:
        head = (
            b"POST /conformance/default HTTP/1.1\r\nHost: b\r\nce-specversion: 1.0\r\n"
            b"ce-id: slow-body\r\nce-source: /s\r\nce-type: t\r\nContent-Length: 1000\r\n\r\n"
        )
        with tricklers(broker.port, 1, head) as (slow,):
            slow.settimeout(15)
            answer = slow.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        broker.publish("after-slow-body")
        wait_for_event(subscriber, "/all", "after-slow-body")
        assert "slow-body" not in [r.ce.get("id") for r in subscriber.received("/all")]
    finally:
        broker.stop()


def test_connections_past_the_cap_get_503_and_the_rest_keep_working(
    subscriber: Subscriber, tmp_path: Path
) -> None:
    broker = start(subscriber, tmp_path, "--max-connections", "5", "--read-timeout", "30")
    try:
        idle = [socket.create_connection(("127.0.0.1", broker.port), timeout=5) for _ in range(5)]
        try:
            time.sleep(0.5)
            with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as extra:
                extra.settimeout(10)
                refused = extra.recv(65536)
            assert refused.startswith(b"HTTP/1.1 503"), refused
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.5)  # the broker notices the closed ones
        broker.publish("after-cap")
        wait_for_event(subscriber, "/all", "after-cap")
    finally:
        broker.stop()

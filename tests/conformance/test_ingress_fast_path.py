"""The ingress fast path (cascade.broker.http.fast_ingress) on raw sockets: what it takes itself,
what it hands to aiohttp mid-connection, and that the answers and deadlines stay those of §1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Mapping

import pytest

from tests.conformance.conftest import StartBroker
from tests.conformance.harness import (
    BrokerProcess,
    Subscriber,
    broker_manifest,
    ce_headers,
    metric_value,
    trigger_manifest,
    wait_for_event,
)

MAX_EVENT_BYTES = 4096
READ_TIMEOUT = 2.0
PATH = "/conformance/default"


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    return start_broker(
        [broker_manifest(), trigger_manifest("all", subscriber.url("/all"))],
        args=["--max-event-bytes", str(MAX_EVENT_BYTES), "--read-timeout", str(READ_TIMEOUT)],
    )


def post(
    headers: Mapping[str, str],
    body: bytes = b"x",
    *,
    path: str = PATH,
    length: bool = True,
    extra: bytes = b"",
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: broker"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines).encode() + b"\r\n" + extra + b"\r\n" + body


@pytest.fixture
def connection(broker: BrokerProcess) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        yield sock


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """The heads of the next ``count`` answers (every answer of the broker has an empty body)."""
    data = b""
    while data.count(b"\r\n\r\n") < count:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return [head for head in data.split(b"\r\n\r\n") if head][:count]


def status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def test_pipelined_events_are_answered_in_order_and_delivered(
    connection: socket.socket, broker: BrokerProcess, subscriber: Subscriber
) -> None:
    connection.sendall(b"".join(post(ce_headers(f"fast-pipe-{n}")) for n in range(5)))
    assert [status(head) for head in read_answers(connection, 5)] == [202] * 5
    for n in range(5):
        wait_for_event(subscriber, "/all", f"fast-pipe-{n}")


def test_a_refused_event_is_handed_to_aiohttp_mid_connection(
    connection: socket.socket, subscriber: Subscriber
) -> None:
    missing_id = {k: v for k, v in ce_headers("x").items() if k != "ce-id"}
    connection.sendall(
        post(ce_headers("fast-before")) + post(missing_id) + post(ce_headers("fast-after"))
    )
    heads = read_answers(connection, 3)
    assert [status(head) for head in heads] == [202, 400, 202]
    assert b"cascade-error: missing required attribute 'id'" in heads[1].lower()
    wait_for_event(subscriber, "/all", "fast-before")
    wait_for_event(subscriber, "/all", "fast-after")


def test_a_probe_first_then_events_on_the_same_connection(
    connection: socket.socket, subscriber: Subscriber
) -> None:
    connection.sendall(b"GET /-/health HTTP/1.1\r\nHost: broker\r\n\r\n")
    data = b""
    while b"}" not in data:  # the whole JSON answer, so the next read starts at the next head
        more = connection.recv(65536)
        assert more
        data += more
    assert status(data) == 200
    connection.sendall(post(ce_headers("fast-after-probe")))
    assert status(read_answers(connection, 1)[0]) == 202
    wait_for_event(subscriber, "/all", "fast-after-probe")


def test_a_body_in_pieces_within_the_deadline(
    connection: socket.socket, subscriber: Subscriber
) -> None:
    request = post(ce_headers("fast-pieces"), b"0123456789")
    for start in range(0, len(request), 7):
        connection.sendall(request[start : start + 7])
        time.sleep(0.01)
    assert status(read_answers(connection, 1)[0]) == 202
    assert wait_for_event(subscriber, "/all", "fast-pieces").body == b"0123456789"


def test_a_body_later_than_the_read_timeout_gets_408_and_the_close(
    connection: socket.socket, broker: BrokerProcess, subscriber: Subscriber
) -> None:
    request = post(ce_headers("fast-slow-body"), b"0123456789")
    connection.sendall(request[:-4])
    started = time.monotonic()
    heads = read_answers(connection, 1)
    assert status(heads[0]) == 408
    assert b"--read-timeout" in heads[0]
    assert READ_TIMEOUT - 0.5 <= time.monotonic() - started <= READ_TIMEOUT + 5
    assert connection.recv(1024) == b""  # closed
    broker.publish("fast-marker")
    wait_for_event(subscriber, "/all", "fast-marker")
    assert not [r for r in subscriber.received("/all") if r.ce.get("id") == "fast-slow-body"]


def test_a_head_later_than_the_read_timeout_is_closed_without_answer(
    connection: socket.socket,
) -> None:
    connection.sendall(post(ce_headers("fast-slow-head"))[:40])
    started = time.monotonic()
    assert connection.recv(1024) == b""
    assert READ_TIMEOUT - 0.5 <= time.monotonic() - started <= READ_TIMEOUT + 5


def test_an_idle_kept_alive_connection_is_closed_after_the_read_timeout(
    connection: socket.socket,
) -> None:
    connection.sendall(post(ce_headers("fast-idle")))
    assert status(read_answers(connection, 1)[0]) == 202
    started = time.monotonic()
    assert connection.recv(1024) == b""
    assert READ_TIMEOUT - 0.5 <= time.monotonic() - started <= READ_TIMEOUT + 5


def test_half_close_after_the_request_still_gets_the_answer(
    connection: socket.socket, subscriber: Subscriber
) -> None:
    connection.sendall(post(ce_headers("fast-half-close")))
    connection.shutdown(socket.SHUT_WR)
    assert status(read_answers(connection, 1)[0]) == 202
    wait_for_event(subscriber, "/all", "fast-half-close")


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        # Over --max-event-bytes by its Content-Length: 503 as §1.5 says.
        (post(ce_headers("fast-big"), b"x" * (MAX_EVENT_BYTES + 1)), 503),
        # Two Content-Length values: not HTTP aiohttp takes.
        (post(ce_headers("fast-two-lengths"), b"xy", extra=b"Content-Length: 2\r\n"), 400),
        # Content-Length and Transfer-Encoding both: refused, never framed two ways.
        (
            post(
                ce_headers("fast-smuggle"),
                b"1\r\nx\r\n0\r\n\r\n",
                extra=b"Transfer-Encoding: chunked\r\n",
            ),
            400,
        ),
        # A non-numeric length.
        (
            post(ce_headers("fast-bad-length"), b"", length=False, extra=b"Content-Length: x\r\n"),
            400,
        ),
        # Unknown Broker path: 404 before the body counts.
        (post(ce_headers("fast-404"), path="/conformance/nope"), 404),
        # A query string: aiohttp's path, this Broker.
        (post(ce_headers("fast-query"), path=PATH + "?a=b"), 202),
    ],
    ids=["over-limit", "two-lengths", "length-and-chunked", "bad-length", "unknown-path", "query"],
)
def test_requests_the_fast_path_hands_over_are_answered_as_before(
    connection: socket.socket, request_bytes: bytes, expected: int
) -> None:
    connection.sendall(request_bytes)
    assert status(read_answers(connection, 1)[0]) == expected


def test_a_chunked_event_is_stored_through_aiohttp(
    connection: socket.socket, subscriber: Subscriber
) -> None:
    connection.sendall(
        post(
            ce_headers("fast-chunked"),
            b"3\r\nabc\r\n0\r\n\r\n",
            length=False,
            extra=b"Transfer-Encoding: chunked\r\n",
        )
    )
    assert status(read_answers(connection, 1)[0]) == 202
    assert wait_for_event(subscriber, "/all", "fast-chunked").body == b"abc"


def test_a_head_with_bytes_llhttp_refuses_is_answered_by_aiohttp(
    connection: socket.socket,
) -> None:
    connection.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: b\r\nBad\x00Name: 1\r\n\r\n")
    heads = read_answers(connection, 1)
    assert heads
    assert status(heads[0]) == 400


def test_accepted_events_are_counted_once(broker: BrokerProcess) -> None:
    before = metric_value(
        broker.metrics(),
        "cascade_broker_events_accepted_total",
        namespace="conformance",
        broker="default",
    )
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(b"".join(post(ce_headers(f"fast-count-{n}")) for n in range(3)))
        assert [status(head) for head in read_answers(sock, 3)] == [202] * 3
    after = metric_value(
        broker.metrics(),
        "cascade_broker_events_accepted_total",
        namespace="conformance",
        broker="default",
    )
    assert after - before == 3

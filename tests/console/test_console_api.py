"""Every console endpoint under hostile input: other hosts and origins, forged or missing
tokens, huge and nested bodies, bad paths; and what an event's text becomes on the wire."""

from __future__ import annotations

import json
import re
import socket
from urllib.parse import quote

import pytest

from cascade.console.app import MAX_BODY_BYTES, MAX_STREAMS
from cascade.console.security import TOKEN_HEADER
from cascade.console.server import ConsoleServer
from tests.console.fakes import HOSTILE_KEY, HOSTILE_TYPE, TRACE_ID, Upstreams
from tests.http_call import Answer, call

GET_PATHS = [
    "/",
    "/live",
    "/dead-letters",
    "/dead-letters/1",
    f"/chains/{quote(HOSTILE_KEY, safe='')}",
    f"/traces/{TRACE_ID}",
    "/static/console.js",
    "/api/topology",
    "/api/stats",
    "/api/deliveries",
    f"/api/chains/{quote(HOSTILE_KEY, safe='')}",
    f"/api/traces/{TRACE_ID}",
    f"/api/search?q={TRACE_ID}",
    "/api/dead-letters",
    "/api/dead-letters/1",
]


def token_of(console: ConsoleServer) -> str:
    page = call("GET", f"{console.url}/").body.decode()
    match = re.search(r'name="cascade-console-token" content="([^"]+)"', page)
    assert match is not None, page
    return match.group(1)


def replay(
    console: ConsoleServer,
    document: object,
    *,
    token: str | None,
    content_type: str = "application/json",
    dead_letter: str = "1",
) -> Answer:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers[TOKEN_HEADER] = token
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return call("POST", f"{console.url}/api/dead-letters/{dead_letter}/replay", body, headers)


@pytest.mark.parametrize("path", GET_PATHS)
def test_every_page_and_endpoint_answers_with_the_protective_headers(
    console: ConsoleServer, path: str
) -> None:
    answer = call("GET", console.url + path)
    assert answer.status == 200, (path, answer.body[:300])
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", GET_PATHS)
@pytest.mark.parametrize("host", ["evil.example:80", "evil.example", "127.0.0.1", "localhost:1"])
def test_a_request_naming_another_host_is_refused(
    console: ConsoleServer, path: str, host: str
) -> None:
    """DNS rebinding: a page whose name now points at 127.0.0.1 still sends its own name."""
    answer = call("GET", console.url + path, headers={"Host": host})
    assert answer.status == 403
    assert b"cascade-console-token" not in answer.body


def test_the_loopback_names_are_served(console: ConsoleServer) -> None:
    for name in ("127.0.0.1", "localhost", "[::1]"):
        answer = call("GET", f"{console.url}/", headers={"Host": f"{name}:{console.port}"})
        assert answer.status == 200, name


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_requests_are_refused(console: ConsoleServer, headers: dict[str, str]) -> None:
    assert call("GET", f"{console.url}/api/dead-letters", headers=headers).status == 403
    answer = replay(console, {"dry_run": True}, token=token_of(console))
    assert answer.status == 200  # the same request from the console itself is fine
    forged = call(
        "POST",
        f"{console.url}/api/dead-letters/1/replay",
        b'{"dry_run": true}',
        {**headers, "Content-Type": "application/json", TOKEN_HEADER: token_of(console)},
    )
    assert forged.status == 403


def test_a_link_from_another_site_opens_the_page(console: ConsoleServer) -> None:
    """Top-level navigation is fine (the other site cannot read what it opened); the same
    request as a script's fetch, or as a form post, is not."""
    navigate = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert call("GET", f"{console.url}/dead-letters/1", headers=navigate).status == 200
    fetch = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
    assert call("GET", f"{console.url}/api/dead-letters/1", headers=fetch).status == 403
    posted = call(
        "POST",
        f"{console.url}/api/dead-letters/1/replay",
        b'{"dry_run": true}',
        {**navigate, "Content-Type": "application/json", TOKEN_HEADER: token_of(console)},
    )
    assert posted.status == 403


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 10_000, "é", "Bearer abc"], ids=repr)
def test_a_replay_without_the_runs_token_is_refused_and_sends_nothing(
    console: ConsoleServer, upstreams: Upstreams, token: str | None
) -> None:
    answer = replay(console, {"dry_run": False, "confirmation": "0" * 32}, token=token)
    assert answer.status in (400, 403)
    assert upstreams.replays_received == []
    assert upstreams.dead_letters[1]["replay_count"] == 0


def test_a_token_of_another_run_is_refused(
    console: ConsoleServer, upstreams: Upstreams, tmp_path: object
) -> None:
    other = ConsoleServer(
        graph={"nodes": [], "edges": []},
        broker_url=upstreams.url,
        span_store=console._state.span_store,
        dead_letter_url=upstreams.url,
        ingress=upstreams.url,
        data_dir=console._state.span_store.parent,
    )
    try:
        assert other.token != console.token
        assert replay(console, {"dry_run": True}, token=other.token).status == 403
    finally:
        other.close()


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"dry_run": true}', "text/plain", 415),
        (b'{"dry_run": true}', "application/x-www-form-urlencoded", 415),
        (b"dry_run=true", "application/x-www-form-urlencoded", 415),
        (b"not json", "application/json", 400),
        (b"", "application/json", 400),
        (b"[]", "application/json", 400),
        (b'"dry_run"', "application/json", 400),
        (b'{"dry_run": "yes"}', "application/json", 400),
        (b'{"dry_run": 1}', "application/json", 400),
        (b'{"dry_run": false, "confirmation": 7}', "application/json", 400),
        (b'{"dry_run": false, "confirmation": "' + b"a" * 65 + b'"}', "application/json", 400),
        (b'{"dry_run": true, "dest": "http://evil.example"}', "application/json", 400),
        (b"[" * 5000 + b"]" * 5000, "application/json", 413),
        (b"[" * 1500 + b"]" * 1500, "application/json", 400),
        (b'{"a": ' * 500 + b"1" + b"}" * 500, "application/json", 400),
        (b'{"dry_run": true, "pad": "' + b"x" * MAX_BODY_BYTES + b'"}', "application/json", 413),
    ],
    ids=lambda value: repr(value[:40]) if isinstance(value, bytes) else str(value),
)
def test_bad_replay_bodies_get_a_clear_error_and_send_nothing(
    console: ConsoleServer, upstreams: Upstreams, body: bytes, content_type: str, status: int
) -> None:
    answer = replay(console, body, token=token_of(console), content_type=content_type)
    assert answer.status == status, answer.body[:300]
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert upstreams.replays_received == []
    # The console still serves after it.
    assert call("GET", f"{console.url}/api/topology").status == 200


def test_a_chunked_body_over_the_limit_is_refused(console: ConsoleServer) -> None:
    with socket.create_connection(("127.0.0.1", console.port), timeout=10) as sock:
        head = (
            f"POST /api/dead-letters/1/replay HTTP/1.1\r\nHost: 127.0.0.1:{console.port}\r\n"
            f"Content-Type: application/json\r\n{TOKEN_HEADER}: {token_of(console)}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        chunk = b"x" * 1024
        try:
            for _ in range(MAX_BODY_BYTES // 1024 + 4):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the console may stop reading once it has refused
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_huge_headers_are_refused_and_the_console_goes_on(console: ConsoleServer) -> None:
    answer = call("GET", f"{console.url}/api/topology", headers={"X-Big": "x" * 100_000})
    assert 400 <= answer.status < 500
    assert call("GET", f"{console.url}/api/topology").status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/chains/%00",
        "/chains/%1b%5b31m",
        "/chains/%20",
        "/chains/" + "k" * 300,
        "/api/chains/%00",
        "/api/chains/a%0Ab",
        "/api/chains/" + "k" * 300,
        "/api/traces/not-hex",
        "/api/traces/" + "a" * 33,
        "/api/dead-letters/abc",
        "/api/dead-letters/0",
        "/api/dead-letters/-1",
        "/api/dead-letters/" + "9" * 30,
        "/api/dead-letters?order_id=%00",
    ],
)
def test_bad_keys_and_ids_are_a_clear_400(console: ConsoleServer, path: str) -> None:
    answer = call("GET", console.url + path)
    assert answer.status == 400, (path, answer.status, answer.body[:200])
    assert answer.json()["title"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/%2e%2e%2fapp.py",
        "/static/..%2fsecurity.py",
        "/static/index.html/..",
        "/static/nothing.js",
        "/etc/passwd",
        "/api/nothing",
        "/dead-letters/1/x",
        "/traces/xyz",
    ],
)
def test_unknown_paths_and_traversal_are_404(console: ConsoleServer, path: str) -> None:
    answer = call("GET", console.url + path)
    assert answer.status == 404, (path, answer.status)
    assert b"import " not in answer.body


def test_unknown_dead_letter_is_404(console: ConsoleServer) -> None:
    assert call("GET", f"{console.url}/api/dead-letters/77").status == 404


def test_state_changes_on_read_only_endpoints_are_refused(console: ConsoleServer) -> None:
    token = token_of(console)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/api/topology", "/api/dead-letters/1", "/"):
            without = call(method, console.url + path, b"{}", {"Content-Type": "application/json"})
            assert without.status == 403, (method, path)
            authorised = call(
                method,
                console.url + path,
                b"{}",
                {"Content-Type": "application/json", TOKEN_HEADER: token},
            )
            assert authorised.status in (404, 405), (method, path, authorised.status)


def test_replay_needs_its_dry_run_and_replays_once(
    console: ConsoleServer, upstreams: Upstreams
) -> None:
    token = token_of(console)
    unconfirmed = replay(console, {"dry_run": False}, token=token)
    assert unconfirmed.status == 409
    assert upstreams.replays_received == []

    dry = replay(console, {"dry_run": True}, token=token)
    assert dry.status == 200
    preview = dry.json()
    assert preview["dry_run"] is True
    assert "would POST" in preview["message"]
    assert upstreams.replays_received == []

    done = replay(console, {"dry_run": False, "confirmation": preview["confirmation"]}, token=token)
    assert done.status == 200, done.body
    assert done.json()["ok"] is True
    assert len(upstreams.replays_received) == 1
    assert json.loads(upstreams.replays_received[0]) == json.loads(
        json.dumps(upstreams.dead_letters[1]["event"]["data"])
    )
    assert upstreams.dead_letters[1]["replay_count"] == 1

    again = replay(
        console, {"dry_run": False, "confirmation": preview["confirmation"]}, token=token
    )
    assert again.status == 409  # the code was for replay count 0
    assert len(upstreams.replays_received) == 1


def test_a_dead_letter_naming_an_unknown_destination_is_not_replayed(
    console: ConsoleServer, upstreams: Upstreams
) -> None:
    """Anyone who can write to the sink writes knativeerrordest too: the console replays only
    to a subscriber of the broker's Triggers, as cascade dlq replay does."""
    upstreams.dead_letters[1]["dest"] = f"{upstreams.url}/elsewhere"
    answer = replay(console, {"dry_run": True}, token=token_of(console))
    assert answer.status == 409
    assert "is not a subscriber the broker routes to" in answer.json()["message"]
    assert answer.json()["confirmation"] is None
    assert upstreams.replays_received == []
    assert upstreams.dead_letters[1]["replay_count"] == 0


def test_replay_follows_the_max_replays_rule_of_cascade_dlq(
    console: ConsoleServer, upstreams: Upstreams
) -> None:
    upstreams.dead_letters[1]["replay_count"] = 3
    answer = replay(console, {"dry_run": True}, token=token_of(console))
    assert answer.status == 409
    assert "refused, replayed 3 times already" in answer.json()["message"]
    assert answer.json()["confirmation"] is None


def test_event_text_is_json_escaped_on_the_wire(console: ConsoleServer) -> None:
    chain = call("GET", f"{console.url}/api/chains/{quote(HOSTILE_KEY, safe='')}")
    assert chain.status == 200
    document = chain.json()
    assert document["events"][0]["type"] == HOSTILE_TYPE
    assert document["dead_letters"][0]["order_id"] == HOSTILE_KEY
    assert document["traces"][0]["trace_id"] == TRACE_ID
    assert b"\x07" not in chain.body  # escaped by JSON
    assert b"\x1b" not in chain.body
    assert chain.headers["content-type"].startswith("application/json")


def test_the_stream_relays_deliveries_as_server_sent_events(console: ConsoleServer) -> None:
    with socket.create_connection(("127.0.0.1", console.port), timeout=10) as sock:
        request = f"GET /api/deliveries/stream HTTP/1.1\r\nHost: 127.0.0.1:{console.port}\r\n\r\n"
        sock.sendall(request.encode())
        received = b""
        while received.count(b"event: delivery") < 2:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert b"text/event-stream" in received
    events = [
        json.loads(line[len(b"data: ") :])
        for line in received.split(b"\n")
        if line.startswith(b"data: ")
    ]
    assert [e["entry"]["seq"] for e in events] == [1, 2]
    assert events[1]["cells"]["label"] == "DEAD-LETTERED"
    assert events[1]["entry"]["type"] == HOSTILE_TYPE
    assert b"id: 2\n" in received


@pytest.mark.parametrize(
    ("last_event_id", "query"),
    [("1", "follow=1&after=1"), ("x", "follow=1&limit=200"), ("9" * 40, "follow=1&limit=200")],
)
def test_the_stream_resumes_after_the_last_event_id(
    console: ConsoleServer, upstreams: Upstreams, last_event_id: str, query: str
) -> None:
    with socket.create_connection(("127.0.0.1", console.port), timeout=10) as sock:
        sock.sendall(
            (
                f"GET /api/deliveries/stream HTTP/1.1\r\nHost: 127.0.0.1:{console.port}\r\n"
                f"Last-Event-ID: {last_event_id}\r\n\r\n"
            ).encode()
        )
        received = b""
        while b"event: delivery" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert upstreams.follow_queries == [query]
    first = next(line for line in received.split(b"\n") if line.startswith(b"id: "))
    assert first == (b"id: 2" if last_event_id == "1" else b"id: 1")


def test_live_streams_are_bounded(console: ConsoleServer, upstreams: Upstreams) -> None:
    upstreams.hold_streams_seconds = 20
    request = f"GET /api/deliveries/stream HTTP/1.1\r\nHost: 127.0.0.1:{console.port}\r\n\r\n"
    held = []
    try:
        for _ in range(MAX_STREAMS):
            sock = socket.create_connection(("127.0.0.1", console.port), timeout=10)
            held.append(sock)
            sock.sendall(request.encode())
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        one_more = call("GET", f"{console.url}/api/deliveries/stream")
        assert one_more.status == 503
    finally:
        for sock in held:
            sock.close()


def test_search_finds_chains_and_traces(console: ConsoleServer) -> None:
    by_trace = call("GET", f"{console.url}/api/search?q={TRACE_ID}").json()
    assert by_trace == {"chain": HOSTILE_KEY}
    by_key = call("GET", f"{console.url}/api/search?q={quote(HOSTILE_KEY)}").json()
    assert by_key == {"chain": HOSTILE_KEY}
    for query in ("nothing-like-it", "%00", "x" * 5000, ""):
        assert call("GET", f"{console.url}/api/search?q={query}").status == 404

"""Stand-ins for what the console reads: the broker (activity feed, metrics), the dead-letter
function (its API, counting replays) and a subscriber a replay is posted to; every text in
them is hostile (markup, control and direction characters)."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cascade.closing import ClosesOnExit
from cascade.traces.store import SpanStore, StoredSpan
from tests.thread_server import QuietHandler, ThreadServer

# What an attacker would put in an event: if any of it ran, window.__pwned would be set.
HOSTILE_TYPE = "com.example.<script>window.__pwned=1</script>.evil\u0007\u202e"
HOSTILE_KEY = '<img src=x onerror="window.__pwned=1">'
HOSTILE_TRIGGER = "<b onmouseover=window.__pwned=1>t</b>"
HOSTILE_REASON = "\x1b[31mred\x1b[0m <script>window.__pwned=1</script>"
HOSTILE_DATA = {"note": "<script>window.__pwned=1</script>", "bell": "\u0007"}
TRACE_ID = "ab" * 16


def activity_entry(seq: int, **overrides: Any) -> dict[str, Any]:
    entry = {
        "seq": seq,
        "time": "2026-12-04T16:00:00.000Z",
        "namespace": "default",
        "trigger": HOSTILE_TRIGGER,
        "subscriber": "http://127.0.0.1:1",
        "type": HOSTILE_TYPE,
        "id": f"evt-{seq}",
        "source": "/evil",
        "partitionkey": HOSTILE_KEY,
        "attempt": 1,
        "outcome": "dead-lettered",
        "status": 503,
        "error": None,
        "reason": HOSTILE_REASON,
        "latency_ms": 1.5,
        "elapsed_ms": 12.0,
    }
    entry.update(overrides)
    return entry


def dead_letter(dead_letter_id: int, dest: str, replays: int = 0) -> dict[str, Any]:
    data = json.dumps(HOSTILE_DATA).encode()
    error = b'{"detail": "<script>window.__pwned=1</script>"}'
    return {
        "id": dead_letter_id,
        "type": HOSTILE_TYPE,
        "source": "/evil",
        "event_id": f"evt-{dead_letter_id}",
        "order_id": HOSTILE_KEY,
        "partitionkey": HOSTILE_KEY,
        "error_code": "503",
        "reason": HOSTILE_REASON,
        "dest": dest,
        "replayable": True,
        "time": "2026-12-04T16:00:00.000Z",
        "last_time": "2026-12-04T16:00:00.000Z",
        "arrivals": 1,
        "replay_count": replays,
        "last_replayed_at": None,
        "order_state": None,
        "error_data": {"base64": base64.b64encode(error).decode()},
        "event": {
            "attributes": {
                "specversion": "1.0",
                "id": f"evt-{dead_letter_id}",
                "source": "/evil",
                "type": HOSTILE_TYPE,
                "partitionkey": HOSTILE_KEY,
                "datacontenttype": "application/json",
            },
            "data": HOSTILE_DATA,
            "data_base64": base64.b64encode(data).decode(),
        },
    }


@dataclass
class Upstreams(ClosesOnExit):
    """One server for the broker, the dead-letter function and the replay's subscriber."""

    activity: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: dict[int, dict[str, Any]] = field(default_factory=dict)
    metrics: str = ""
    replays_received: list[bytes] = field(default_factory=list)
    hold_streams_seconds: float = 0.5
    follow_queries: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self
        lock = threading.Lock()

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if parts.path == "/-/activity":
                    after = int(query.get("after", ["0"])[0])
                    fresh = [e for e in fake.activity if e["seq"] > after]
                    lines = b"".join(json.dumps(e).encode() + b"\n" for e in fresh)
                    if "follow" in query:
                        fake.follow_queries.append(parts.query)
                        self._stream(lines)
                    else:
                        self._answer(200, lines, "application/x-ndjson")
                elif (
                    parts.path == "/-/triggers"
                ):  # where replays may go (dead_letters.destinations)
                    self._json([{"namespace": "default", "subscriber": f"{fake.url}/subscriber"}])
                elif parts.path == "/metrics":
                    self._answer(200, fake.metrics.encode(), "text/plain")
                elif parts.path == "/dead-letters":
                    entries = sorted(fake.dead_letters.values(), key=lambda d: -d["id"])
                    wanted = query.get("partitionkey", [None])[0]
                    listed = [e for e in entries if wanted in (None, e["partitionkey"])]
                    self._json({"dead_letters": listed})
                elif parts.path.startswith("/dead-letters/"):
                    entry = fake.dead_letters.get(int(parts.path.rsplit("/", 1)[1]))
                    if entry is None:
                        self._json({"title": "no such dead letter", "detail": "gone"}, 404)
                    else:
                        self._json(entry)
                else:
                    self._answer(404, b"no route", "text/plain")

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlsplit(self.path).path
                if path == "/subscriber":
                    with lock:
                        fake.replays_received.append(body)
                    self._answer(204, b"", "text/plain")
                elif path.startswith("/dead-letters/") and path.endswith("/replayed"):
                    entry = fake.dead_letters[int(path.split("/")[2])]
                    with lock:
                        entry["replay_count"] += 1
                    self._json(entry)
                else:
                    self._answer(404, b"no route", "text/plain")

            def _json(self, document: object, status: int = 200) -> None:
                self._answer(status, json.dumps(document).encode(), "application/json")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self, lines: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    self.wfile.write(lines)
                    self.wfile.flush()
                    deadline = time.monotonic() + fake.hold_streams_seconds
                    while time.monotonic() < deadline:
                        time.sleep(0.1)
                        self.wfile.write(b"\n")  # the broker's heartbeat
                        self.wfile.flush()
                except OSError:
                    pass  # the console went away

        self._http = ThreadServer(Handler, poll_interval=0.05)
        self.url = self._http.url

    def close(self) -> None:
        self._http.close()


def hostile_spans(store: SpanStore) -> None:
    """A trace of the hostile key: an event published, delivered, failing, dead-lettered."""
    attributes = {
        "cloudevents.event_id": "evt-1",
        "cloudevents.event_type": HOSTILE_TYPE,
        "cloudevents.event_source": "/evil",
        "messaging.message.conversation_id": HOSTILE_KEY,
    }
    start = time.time_ns()
    store.add(
        [
            StoredSpan(
                TRACE_ID, "1" * 16, None, f"send {HOSTILE_TYPE}", 4, "<i>evil-service</i>",
                start, start + 2_000_000,
                attributes={**attributes, "messaging.operation.type": "send"},
            ),
            StoredSpan(
                TRACE_ID, "2" * 16, "1" * 16, f"deliver default/{HOSTILE_TRIGGER}", 3,
                "cascade-broker", start + 1_000_000, start + 5_000_000, status_code=2,
                status_message=HOSTILE_REASON,
                attributes={
                    **attributes,
                    "cascade.trigger": f"default/{HOSTILE_TRIGGER}",
                    "cascade.delivery.attempt": 1,
                    "cascade.delivery.target": "subscriber",
                    "cascade.delivery.outcome": "retryable",
                    "http.response.status_code": 503,
                },
            ),
        ]
    )  # fmt: skip

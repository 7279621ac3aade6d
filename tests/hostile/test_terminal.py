"""Issue 10, row 7 (terminal part): ESC, BEL and other non-printable characters in event text
are escaped by ``cascade run`` / ``tail`` (one line per delivery), ``dlq``, ``trace`` and
``send``; printed raw they would drive the reader's terminal or forge lines."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from cascade.commands.dlq import dlq
from cascade.commands.trace import trace as trace_command
from cascade.runner.display import format_activity
from cascade.traces.store import STORE_FILE, SpanStore, StoredSpan
from cascade.traces.waterfall import render_trace
from tests.thread_server import QuietHandler, ThreadServer

HOSTILE = "com.evil.\x1b]0;owned\x07\x1b[2J\u202etxt.exe\nFORGED LINE"
CONTROL = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]} | {"\u202e", "\u2028"}


def assert_safe(output: str) -> None:
    assert not CONTROL & set(output.replace("\n", "")), repr(output)
    assert not any(line.startswith("FORGED") for line in output.splitlines()), output
    assert "\\x1b" in output or "\\u001b" in output  # shown, escaped


def test_run_and_tail_lines_escape_event_text() -> None:
    entry = {
        "time": "2026-01-01T00:00:00Z",
        "outcome": "dead-lettered",
        "type": HOSTILE,
        "partitionkey": "\x1b[31m",
        "trigger": "t\x07",
        "namespace": "default",
        "status": 422,
        "reason": "bad\x1b[1mreason\nFORGED",
    }
    for color in (False, True):
        line = format_activity(entry, color=color)
        body = line.replace("\x1b[0m", "").replace("\x1b[31m", "").replace("\x1b[1m", "")
        if color:  # our own styling is the only escape sequence left
            body = body.replace("\x1b[22m", "").replace("\x1b[39m", "")
        assert "\n" not in line
        assert not {"\x07", "\u202e"} & set(line)
        assert not any(seq in line for seq in ("\x1b]", "\x1b[2J"))
        assert "\\x1b" in body


def hostile_span(**fields: Any) -> StoredSpan:
    """A root span whose service and name came from a hostile event."""
    defaults: dict[str, Any] = {"parent_span_id": None, "kind": 2, "start_ns": 1, "end_ns": 2}
    return StoredSpan(
        trace_id="ab" * 16,
        span_id="cd" * 8,
        name=f"process {HOSTILE}",
        service="order\x1b[2J",
        **{**defaults, **fields},
    )


def test_a_trace_waterfall_escapes_span_text() -> None:
    span = hostile_span(status_code=2, status_message="\x07boom")
    shown = render_trace([span], color=False)
    assert_safe(shown)
    assert len(shown.splitlines()) == 3  # title, header, one span: no forged line


@pytest.fixture
def dead_letters() -> Iterator[str]:
    entry = {
        "id": 7,
        "type": HOSTILE,
        "order_id": "o\x1b[8m",
        "error_code": 500,
        "dest": "http://127.0.0.1:9/\x1b]8;;x\x07",
        "replay_count": 0,
        "reason": "\x1b]0;title\x07why",
        "time": "t",
        "last_time": "t",
        "error_data": {"base64": base64.b64encode(b"raw \x1b[2J answer\x07").decode()},
        "event": {"attributes": {"type": HOSTILE, "id": "1\x1b"}, "data": {"k": "v\x1b\x9b"}},
    }

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            document = (
                {"dead_letters": [entry]} if self.path.startswith("/dead-letters?") else entry
            )
            body = orjson.dumps(document)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with ThreadServer(Handler) as server:
        yield server.url


@pytest.mark.parametrize(
    "args", [["list"], ["list", "--json"], ["show", "7"], ["show", "7", "--json"]]
)
def test_dlq_escapes_what_the_dead_letter_carries(
    dead_letters: str, tmp_path: Path, args: list[str]
) -> None:
    result = CliRunner().invoke(dlq, ["--url", dead_letters, "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    assert_safe(result.output)


def test_cascade_trace_lists_and_draws_escaped(tmp_path: Path) -> None:
    span = hostile_span(attributes={"messaging.message.conversation_id": "ord\x1b]0;x\x07"})
    with SpanStore(tmp_path / STORE_FILE) as store:
        store.add([span])
    runner = CliRunner()
    for args in ([], ["ab" * 16], ["ab" * 16, "--json"]):
        result = runner.invoke(trace_command, [*args, "--data-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert_safe(result.output)

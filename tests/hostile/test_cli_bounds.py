"""Issue 10, item 2 (CLI clients): ``cascade dlq`` and ``cascade tail`` read at most a bounded
answer from whatever answers at their URL, and say so past it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade.commands.dlq import dlq
from cascade.commands.tail import tail
from cascade.http_client import MAX_ANSWER_BYTES
from cascade.runner.feed import MAX_LINE_BYTES
from tests.thread_server import QuietHandler, ThreadServer

CHUNK = b"x" * (1024 * 1024)


@pytest.fixture
def endless() -> Iterator[str]:
    """Answers every GET with 200 and a body far past both limits, without a line break."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(10 * MAX_ANSWER_BYTES))
            self.end_headers()
            past = MAX_LINE_BYTES if self.path.startswith("/-/activity") else MAX_ANSWER_BYTES
            with contextlib.suppress(OSError):
                for _ in range(past // len(CHUNK) + 2):
                    self.wfile.write(CHUNK)
            self.close_connection = True

    with ThreadServer(Handler) as server:
        yield server.url


def test_dlq_refuses_an_answer_past_its_limit(endless: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(dlq, ["--url", endless, "--data-dir", str(tmp_path), "list"])
    assert result.exit_code == 1, result.output
    assert f"more than {MAX_ANSWER_BYTES} bytes" in result.output


def test_tail_refuses_a_line_past_its_limit(endless: str) -> None:
    result = CliRunner().invoke(tail, ["--url", endless, "--no-follow"])
    assert result.exit_code == 1, result.output
    assert f"over {MAX_LINE_BYTES} bytes" in result.output

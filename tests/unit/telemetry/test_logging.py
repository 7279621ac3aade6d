"""JSON log lines carry trace_id, span_id and the event being handled."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from cascade.telemetry.logging import JsonFormatter, event_log_context, setup_logging
from cascade.testing import FunctionClient


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    setup_logging("DEBUG", stream, service="test")
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_extras_and_exceptions(captured: io.StringIO) -> None:
    log = logging.getLogger("t")
    log.info("hello %s", "world", extra={"order_id": "o-1"})
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("failed")
    first, second = lines(captured)
    assert first["message"] == "hello world"
    assert first["level"] == "INFO"
    assert first["logger"] == "t"
    assert first["order_id"] == "o-1"
    assert first["service"] == "test"
    assert "trace_id" not in first
    assert "ValueError: bad" in str(second["exception"])


def test_event_context_fields(captured: io.StringIO) -> None:
    with event_log_context({"event_id": "e-1", "function": "f"}):
        logging.getLogger("t").warning("inside")
    logging.getLogger("t").warning("outside")
    inside, outside = lines(captured)
    assert inside["event_id"] == "e-1"
    assert "event_id" not in outside


def test_setup_logging_is_idempotent(captured: io.StringIO) -> None:
    setup_logging("INFO", captured)
    logging.getLogger("t").info("once")
    assert len(captured.getvalue().splitlines()) == 1


def test_handler_logs_carry_trace_and_event_ids(
    captured: io.StringIO, probe: ModuleType, tmp_path: Path
) -> None:
    with FunctionClient(probe.fn, None) as client:
        client.send(probe.Command(action="boom"), event_id="e-9")
        (span,) = client.spans()
    records = [r for r in lines(captured) if r.get("event_id") == "e-9"]
    assert records
    for record in records:
        assert record["trace_id"] == f"{span.context.trace_id:032x}"
        assert record["span_id"] == f"{span.context.span_id:016x}"
        assert record["function"] == "probe"
    failure = next(r for r in records if r["level"] == "ERROR")
    assert "RuntimeError: secret internal detail" in str(failure["exception"])


def test_formatter_never_fails_on_odd_extras() -> None:
    record = logging.LogRecord("t", logging.INFO, "", 0, "m", None, None)
    record.__dict__["weird"] = object()
    assert "weird" in orjson.loads(JsonFormatter().format(record))

"""JSON logs, one object per line, carrying trace_id, span_id and the event being handled.

Any logger used inside a handler (``ctx.logger`` or a module's own) gets the fields, because
the event travels in a context variable and the trace ids come from the current span.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from opentelemetry import trace

__all__ = [
    "JsonFormatter",
    "event_log_context",
    "reset_event_log_fields",
    "set_event_log_fields",
    "setup_logging",
]

_current_event: ContextVar[Mapping[str, str] | None] = ContextVar("cascade_event", default=None)

# Attributes every LogRecord has; anything else was passed with extra={...}.
_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


@contextmanager
def event_log_context(fields: Mapping[str, str]) -> Iterator[None]:
    """Attach ``fields`` (event id, type, source, function) to log lines in this block."""
    token = set_event_log_fields(fields)
    try:
        yield
    finally:
        reset_event_log_fields(token)


def set_event_log_fields(fields: Mapping[str, str]) -> Token[Mapping[str, str] | None]:
    """Attach ``fields`` to log lines until :func:`reset_event_log_fields` (hot-path form)."""
    return _current_event.set(fields)


def reset_event_log_fields(token: Token[Mapping[str, str] | None]) -> None:
    _current_event.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one compact JSON object."""

    def __init__(self, static: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update(self._static)
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            document["trace_id"] = format(span_context.trace_id, "032x")
            document["span_id"] = format(span_context.span_id, "016x")
        event = _current_event.get()
        if event is not None:
            document.update(event)
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                document.setdefault(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            document["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return orjson.dumps(document, default=str).decode()


class _CascadeHandler(logging.StreamHandler[IO[str]]):
    """Marker class so setup_logging can replace its own handler and nobody else's."""


def setup_logging(level: str = "INFO", stream: IO[str] | None = None, **static: str) -> None:
    """Send the root logger's records to ``stream`` (stderr) as JSON lines; idempotent."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, _CascadeHandler):
            root.removeHandler(existing)
    handler = _CascadeHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(static))
    root.addHandler(handler)
    root.setLevel(level.upper())

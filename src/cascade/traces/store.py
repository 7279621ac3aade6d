"""The local span store of ``cascade run``: OTLP spans in one SQLite file, bounded.

``cascade run`` receives every process's spans (:mod:`cascade.traces.receiver`) and keeps them
here, in ``<data-dir>/traces.sqlite3``, so ``cascade trace`` can draw a trace without Jaeger.
The store keeps at most ``max_spans`` spans and none older than ``max_age_seconds`` (by the
time they arrived); the oldest go first. A span sent twice (an exporter retrying) is kept once.

What is kept per span: ids, name, kind, service (``service.name`` of its resource), times,
status, attributes and links (JSON), events (JSON: exceptions), and the conversation id
(:data:`~cascade.telemetry.tracing.CONVERSATION_ID`, the order id in the shop), indexed, so
the traces of one order are found at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from cascade.telemetry.tracing import CONVERSATION_ID

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = [
    "DEFAULT_MAX_AGE_SECONDS",
    "DEFAULT_MAX_SPANS",
    "STORE_FILE",
    "SpanLink",
    "SpanStore",
    "StoredSpan",
    "spans_from_otlp",
]

STORE_FILE: Final = "traces.sqlite3"
DEFAULT_MAX_SPANS: Final = 200_000
DEFAULT_MAX_AGE_SECONDS: Final = 24 * 3600.0

# OTLP SpanKind numbers, by name.
KIND_NAMES: Final = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
STATUS_ERROR: Final = 2

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    service TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status_code INTEGER NOT NULL,
    status_message TEXT NOT NULL,
    attributes TEXT NOT NULL,
    links TEXT NOT NULL,
    events TEXT NOT NULL,
    conversation_id TEXT,
    links_to TEXT,
    received_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_identity ON spans (trace_id, span_id);
CREATE INDEX IF NOT EXISTS spans_conversation ON spans (conversation_id);
CREATE INDEX IF NOT EXISTS spans_received ON spans (received_at);
"""
_COLUMNS: Final = (
    "trace_id, span_id, parent_span_id, name, kind, service, start_ns, end_ns, status_code, "
    "status_message, attributes, links, events, conversation_id, links_to"
)


@dataclass(frozen=True)
class SpanLink:
    trace_id: str
    span_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    service: str
    start_ns: int
    end_ns: int
    status_code: int = 0
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    links: tuple[SpanLink, ...] = ()
    events: tuple[dict[str, Any], ...] = ()

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))

    @property
    def error(self) -> bool:
        return self.status_code == STATUS_ERROR

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def conversation_id(self) -> str | None:
        value = self.attributes.get(CONVERSATION_ID)
        return value if isinstance(value, str) else None


# --- OTLP → StoredSpan -----------------------------------------------------------------------


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def spans_from_otlp(body: bytes) -> list[StoredSpan]:
    """Decode an OTLP/HTTP protobuf ``ExportTraceServiceRequest``; ValueError when it is not one."""
    # Imported here: protobuf is only needed where spans are received, not to read the store.
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except Exception as exc:  # the protobuf runtime raises its own DecodeError
        raise ValueError(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or "unknown_service")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise ValueError(f"span {span.name!r} has an invalid trace or span id")
                spans.append(
                    StoredSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=int(span.kind),
                        service=service,
                        start_ns=int(span.start_time_unix_nano),
                        end_ns=int(span.end_time_unix_nano),
                        status_code=int(span.status.code),
                        status_message=span.status.message,
                        attributes=_attributes(span.attributes),
                        links=tuple(
                            SpanLink(
                                link.trace_id.hex(),
                                link.span_id.hex(),
                                _attributes(link.attributes),
                            )
                            for link in span.links
                        ),
                        events=tuple(
                            {
                                "name": event.name,
                                "time_ns": int(event.time_unix_nano),
                                "attributes": _attributes(event.attributes),
                            }
                            for event in span.events
                        ),
                    )
                )
    return spans


# --- the store ---------------------------------------------------------------------------------


class SpanStore:
    """Thread-safe; one writer connection (the receiver's), readers open their own."""

    def __init__(
        self,
        path: Path,
        *,
        max_spans: int = DEFAULT_MAX_SPANS,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        readonly: bool = False,
    ) -> None:
        if max_spans < 1:
            raise ValueError("max_spans must be at least 1")
        if max_age_seconds <= 0:
            raise ValueError("max_age_seconds must be above 0")
        self.path = path
        self.max_spans = max_spans
        self.max_age_seconds = max_age_seconds
        self._lock = threading.Lock()
        if readonly:
            if not path.is_file():
                raise FileNotFoundError(f"no span store at {path}")
            self._db = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=10
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SpanStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- writing --------------------------------------------------------------------------

    def add(self, spans: Sequence[StoredSpan], now: float | None = None) -> int:
        """Store ``spans`` (a repeated span is ignored), then trim; returns how many were new."""
        if not spans:
            return 0
        received = time.time() if now is None else now
        rows = [
            (
                s.trace_id,
                s.span_id,
                s.parent_span_id,
                s.name,
                s.kind,
                s.service,
                s.start_ns,
                s.end_ns,
                s.status_code,
                s.status_message,
                orjson.dumps(s.attributes, default=str).decode(),
                orjson.dumps(
                    [
                        {"trace_id": k.trace_id, "span_id": k.span_id, "attributes": k.attributes}
                        for k in s.links
                    ],
                    default=str,
                ).decode(),
                orjson.dumps(list(s.events), default=str).decode(),
                s.conversation_id,
                " ".join(sorted({k.trace_id for k in s.links if k.trace_id != s.trace_id})) or None,
                received,
            )
            for s in spans
        ]
        with self._lock, self._db:
            before = self._db.total_changes
            self._db.executemany(
                f"INSERT OR IGNORE INTO spans ({_COLUMNS}, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = self._db.total_changes - before
            self._trim(received)
        return added

    def _trim(self, now: float) -> None:
        self._db.execute("DELETE FROM spans WHERE received_at < ?", (now - self.max_age_seconds,))
        self._db.execute(
            "DELETE FROM spans WHERE id <= (SELECT MAX(id) FROM spans) - ?", (self.max_spans,)
        )

    # --- reading --------------------------------------------------------------------------

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM spans").fetchone()[0])

    def trace(self, trace_id: str) -> list[StoredSpan]:
        """Every span of one trace, by start time."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM spans WHERE trace_id = ? ORDER BY start_ns, id",
                (trace_id.lower(),),
            ).fetchall()
        return [_span(row) for row in rows]

    def traces_of(self, conversation_id: str) -> list[str]:
        """Trace ids with a span about ``conversation_id`` (or an id starting with it, when it
        is the 8-character prefix ``cascade run`` shows), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT trace_id, MIN(start_ns) AS first FROM spans "
                "WHERE conversation_id = ?1 "
                "OR (length(?1) >= 8 AND substr(conversation_id, 1, length(?1)) = ?1) "
                "GROUP BY trace_id ORDER BY first",
                (conversation_id,),
            ).fetchall()
        return [str(row["trace_id"]) for row in rows]

    def conversations_of(self, trace_id: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT conversation_id FROM spans "
                "WHERE trace_id = ? AND conversation_id IS NOT NULL ORDER BY conversation_id",
                (trace_id.lower(),),
            ).fetchall()
        return [str(row["conversation_id"]) for row in rows]

    def linked_traces(self, trace_id: str) -> list[str]:
        """Other traces with a span linking into ``trace_id`` (a replay of a dead letter)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT trace_id, MIN(start_ns) AS first FROM spans "
                "WHERE links_to LIKE '%' || ? || '%' GROUP BY trace_id ORDER BY first",
                (trace_id.lower(),),
            ).fetchall()
        return [str(row["trace_id"]) for row in rows]

    def recent_traces(self, limit: int = 20) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT trace_id, MAX(id) AS newest FROM spans GROUP BY trace_id "
                "ORDER BY newest DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [str(row["trace_id"]) for row in rows]

    def spans(self) -> Iterator[StoredSpan]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM spans ORDER BY id").fetchall()
        return (_span(row) for row in rows)


def _span(row: sqlite3.Row) -> StoredSpan:
    return StoredSpan(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        name=row["name"],
        kind=int(row["kind"]),
        service=row["service"],
        start_ns=int(row["start_ns"]),
        end_ns=int(row["end_ns"]),
        status_code=int(row["status_code"]),
        status_message=row["status_message"],
        attributes=orjson.loads(row["attributes"]),
        links=tuple(
            SpanLink(link["trace_id"], link["span_id"], link.get("attributes") or {})
            for link in orjson.loads(row["links"])
        ),
        events=tuple(orjson.loads(row["events"])),
    )

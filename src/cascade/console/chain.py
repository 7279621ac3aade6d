"""One chain (everything with one partitionkey, an order in the shop) and its traces, as JSON.

The events, their delivery attempts and replies come from the span store, which holds every
attempt (the broker's activity feed keeps only the newest entries and none from an earlier
run); the broker's own lines for the key come from the activity feed, the dead letters from the
dead-letter function. Waterfall rows are the ones ``cascade trace`` draws.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from cascade.telemetry.tracing import ORIGIN_LINK
from cascade.traces.store import SpanStore, StoredSpan
from cascade.traces.waterfall import TraceTree, outcome_of, short_name

__all__ = [
    "MAX_KEY_LENGTH",
    "TRACE_ID",
    "bad_key",
    "chain_events",
    "resolve",
    "waterfall",
]

MAX_KEY_LENGTH: Final = 256
TRACE_ID: Final = re.compile(r"[0-9a-fA-F]{32}\Z")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_BROKER_SERVICE: Final = "cascade-broker"


def bad_key(key: str) -> str | None:
    """Why ``key`` cannot be a partitionkey to look up, or None when it can."""
    if not key.strip():
        return "the partitionkey is empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"the partitionkey is longer than {MAX_KEY_LENGTH} characters"
    if _CONTROL.search(key):
        return "the partitionkey holds control characters"
    return None


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _event_id(span: StoredSpan) -> str | None:
    value = span.attributes.get("cloudevents.event_id")
    return value if isinstance(value, str) and value else None


def chain_events(spans: Sequence[StoredSpan]) -> list[dict[str, Any]]:
    """Every event seen in ``spans`` (of one or more traces), oldest first, each with where it
    came from (a reply: which event and service), its delivery attempts and its replays."""
    by_id = {span.span_id: span for span in spans}
    events: dict[str, dict[str, Any]] = {}
    for span in sorted(spans, key=lambda s: (s.start_ns, s.end_ns)):
        event_id = _event_id(span)
        if event_id is None:
            continue
        event = events.get(event_id)
        if event is None:
            event = events[event_id] = {
                "id": event_id,
                "type": span.attributes.get("cloudevents.event_type"),
                "source": span.attributes.get("cloudevents.event_source"),
                "first_ns": span.start_ns,
                "trace_id": span.trace_id,
                "published_by": None,
                "reply_to": None,
                "attempts": [],
                "replays": [],
            }
        operation = span.attributes.get("messaging.operation.type")
        if span.name.startswith("replay ") and "cascade.dead_letter.id" in span.attributes:
            event["replays"].append(
                {
                    "trace_id": span.trace_id,
                    "dead_letter": span.attributes.get("cascade.dead_letter.id"),
                    "count": span.attributes.get("cascade.replay.count"),
                    "status": span.attributes.get("http.response.status_code"),
                    "error": span.status_message if span.error else None,
                    "start_ns": span.start_ns,
                }
            )
        elif operation == "send" and event["published_by"] is None:
            parent = by_id.get(span.parent_span_id or "")
            if (
                span.service == _BROKER_SERVICE
                and parent is not None
                and parent.attributes.get("messaging.operation.type") == "process"
            ):
                event["published_by"] = parent.service
                event["reply_to"] = {"id": _event_id(parent), "service": parent.service}
            elif span.service != _BROKER_SERVICE:
                event["published_by"] = span.service
        elif "cascade.trigger" in span.attributes:
            event["attempts"].append(_attempt(span, spans))
    return sorted(events.values(), key=lambda e: e["first_ns"])


def _attempt(span: StoredSpan, spans: Sequence[StoredSpan]) -> dict[str, Any]:
    attributes = span.attributes
    handler = next(
        (s for s in spans if s.parent_span_id == span.span_id and s.service != _BROKER_SERVICE),
        None,
    )
    return {
        "trigger": attributes.get("cascade.trigger"),
        "attempt": attributes.get("cascade.delivery.attempt"),
        "target": attributes.get("cascade.delivery.target"),
        "url": attributes.get("url.full"),
        "status": attributes.get("http.response.status_code"),
        "outcome": attributes.get("cascade.delivery.outcome"),
        "handler": handler.attributes.get("cascade.outcome") if handler is not None else None,
        "service": handler.service if handler is not None else None,
        "latency_ms": _ms(span.duration_ns),
        "start_ns": span.start_ns,
        "error": span.status_message if span.error else None,
    }


def waterfall(spans: Sequence[StoredSpan], linked_from: Iterable[str] = ()) -> dict[str, Any]:
    """The rows of one trace's waterfall: depth, service, short name, start offset and
    duration in ms, outcome and its style (``error``, ``retry`` or None)."""
    tree = TraceTree.of(spans)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    rows = []
    for depth, span in tree.walk():
        outcome, style = outcome_of(span)
        rows.append(
            {
                "span_id": span.span_id,
                "depth": depth,
                "service": span.service,
                "name": short_name(span.name),
                "full_name": span.name,
                "kind": span.kind_name,
                "offset_ms": _ms(span.start_ns - start),
                "duration_ms": _ms(span.duration_ns),
                "outcome": outcome,
                "style": style,
                "orphan": span.span_id in tree.orphans,
                "status_message": span.status_message,
            }
        )
    links_to = sorted(
        {
            link.trace_id
            for span in spans
            for link in span.links
            if link.trace_id != span.trace_id and link.attributes.get("cascade.link") == ORIGIN_LINK
        }
    )
    return {
        "trace_id": spans[0].trace_id,
        "start_ns": start,
        "duration_ms": _ms(end - start),
        "spans": len(spans),
        "errors": sum(1 for s in spans if s.error),
        "conversations": sorted({s.conversation_id for s in spans if s.conversation_id}),
        "rows": rows,
        "links_to": links_to,
        "linked_from": list(linked_from),
    }


def resolve(
    store: SpanStore | None, query: str, activity: Iterable[Mapping[str, Any]]
) -> dict[str, str] | None:
    """What a search for ``query`` (an order id, its 8-character prefix, or a trace id) finds:
    ``{"chain": key}``, ``{"trace": id}``, or None."""
    query = query.strip()
    if bad_key(query) is not None:
        return None
    if store is not None and TRACE_ID.match(query) and store.trace(query):
        conversations = store.conversations_of(query)
        return {"chain": conversations[0]} if conversations else {"trace": query.lower()}
    keys = [str(e["partitionkey"]) for e in activity if isinstance(e.get("partitionkey"), str)]
    if query in keys:
        return {"chain": query}
    if store is not None:
        for trace_id in store.traces_of(query):
            for conversation in store.conversations_of(trace_id):
                if conversation == query or (len(query) >= 8 and conversation.startswith(query)):
                    return {"chain": conversation}
    if len(query) >= 8:
        for key in reversed(keys):
            if key.startswith(query):
                return {"chain": key}
    return None

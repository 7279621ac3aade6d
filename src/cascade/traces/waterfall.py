"""A trace as a waterfall in the terminal: one line per span, children indented under parents.

Columns: service, span name (event types shortened to their last two segments), a bar on the
trace's time axis, duration, and the outcome (HTTP status, ``retry #n``, the handler's
outcome, ``→ dead-letter sink``). docs/observability.md shows a real one.

Bars share one time axis (the trace's first start to its last end). A span whose parent is not
in the store is drawn as a root and marked ``(parent missing)``; retries show their number,
errors are red and retries yellow on a terminal.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import click

from cascade.telemetry.tracing import ORIGIN_LINK
from cascade.terminal import printable
from cascade.traces.store import StoredSpan

__all__ = ["TraceTree", "outcome_of", "render_trace", "short_name"]

_LONG_TYPE: Final = re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+){3,}\b")
_INDENT: Final = 2


def short_name(name: str) -> str:
    """``process com.example.shop.order.created`` → ``process order.created``."""
    return _LONG_TYPE.sub(lambda m: ".".join(m.group(0).split(".")[-2:]), name)


@dataclass(frozen=True)
class TraceTree:
    """The spans of one trace arranged parent → children (by start time)."""

    spans: tuple[StoredSpan, ...]
    roots: tuple[StoredSpan, ...]
    children: Mapping[str, tuple[StoredSpan, ...]]
    orphans: frozenset[str]  # span ids whose parent is not in the trace

    @classmethod
    def of(cls, spans: Sequence[StoredSpan]) -> TraceTree:
        ordered = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))
        ids = {span.span_id for span in ordered}
        children: dict[str, list[StoredSpan]] = defaultdict(list)
        roots = []
        orphans = set()
        for span in ordered:
            if span.parent_span_id is None:
                roots.append(span)
            elif span.parent_span_id not in ids:
                roots.append(span)
                orphans.add(span.span_id)
            else:
                children[span.parent_span_id].append(span)
        return cls(
            tuple(ordered),
            tuple(roots),
            {key: tuple(value) for key, value in children.items()},
            frozenset(orphans),
        )

    def walk(self) -> Iterator[tuple[int, StoredSpan]]:
        """(depth, span) in display order: depth first, siblings by start time."""
        stack = [(0, root) for root in reversed(self.roots)]
        while stack:
            depth, span = stack.pop()
            yield depth, span
            for child in reversed(self.children.get(span.span_id, ())):
                stack.append((depth + 1, child))


def outcome_of(span: StoredSpan) -> tuple[str, str | None]:
    """What happened, in a few words, and the style: ``error``, ``retry`` or None."""
    attributes = span.attributes
    parts: list[str] = []
    style: str | None = None
    status = attributes.get("http.response.status_code")
    if status is not None:
        parts.append(str(status))
    attempt = attributes.get("cascade.delivery.attempt")
    if isinstance(attempt, int) and attempt > 1:
        parts.append(f"retry #{attempt - 1}")
        style = "retry"
    if attributes.get("cascade.delivery.target") == "dead-letter sink":
        parts.append("→ dead-letter sink")
    delivery = attributes.get("cascade.delivery.outcome")
    if delivery not in (None, "success"):
        parts.append(str(delivery))
    handler = attributes.get("cascade.outcome")
    if handler is not None:
        parts.append(str(handler))
        if handler == "retry":
            style = style or "retry"
    if span.error:
        style = "error"
        if span.status_message and not parts:
            parts.append(span.status_message[:60])
    return " ".join(parts) or ("error" if span.error else "ok"), style


def _duration(ns: int) -> str:
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f} s"
    return f"{ns / 1e6:.1f} ms"


def _bar(span: StoredSpan, start: int, total: int, width: int, glyph: str) -> str:
    if total <= 0:
        return glyph.ljust(width)
    left = int((span.start_ns - start) / total * width)
    left = min(max(left, 0), width - 1)
    length = max(1, round(span.duration_ns / total * width))
    length = min(length, width - left)
    return (" " * left + glyph * length).ljust(width)


_STYLES: Final[dict[str, dict[str, Any]]] = {
    "error": {"fg": "red"},
    "retry": {"fg": "yellow"},
}


def render_trace(
    spans: Sequence[StoredSpan],
    *,
    width: int = 30,
    color: bool = False,
    unicode: bool = True,
    linked_from: Sequence[str] = (),
) -> str:
    """The waterfall of one trace's spans (all of the same trace id)."""
    if not spans:
        return "(no spans)"
    tree = TraceTree.of(spans)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total = end - start
    glyph = "█" if unicode else "#"
    conversations = sorted({printable(s.conversation_id) for s in spans if s.conversation_id})
    errors = sum(1 for s in spans if s.error)
    head = [f"trace {spans[0].trace_id}"]
    if conversations:
        head.append(f"order {', '.join(conversations)}")
    head += [f"{len(spans)} spans", _duration(total)]
    if errors:
        head.append(f"{errors} error{'s' if errors != 1 else ''}")
    lines = [" · ".join(head)]

    rows = []
    for depth, span in tree.walk():
        name = " " * (depth * _INDENT) + printable(short_name(span.name))
        if span.span_id in tree.orphans:
            name += " (parent missing)"
        outcome, style = outcome_of(span)
        bar = _bar(span, start, total, width, glyph)
        rows.append((printable(span.service), name, bar, span, printable(outcome), style))
    service_width = max(7, *(len(r[0]) for r in rows))
    name_width = max(4, *(len(r[1]) for r in rows))
    header = (
        f"{'SERVICE':<{service_width}}  {'SPAN':<{name_width}}  {'WATERFALL':<{width}}  "
        f"{'DURATION':>9}  OUTCOME"
    )
    lines.append(click.style(header, bold=True) if color else header)
    for service, name, bar, span, outcome, style in rows:
        line = (
            f"{service:<{service_width}}  {name:<{name_width}}  {bar}  "
            f"{_duration(span.duration_ns):>9}  {outcome}"
        )
        if color and style is not None:
            line = click.style(line, **_STYLES[style])
        lines.append(line.rstrip())

    outside = sorted(
        {
            link.trace_id
            for span in spans
            for link in span.links
            if link.trace_id != span.trace_id and link.attributes.get("cascade.link") == ORIGIN_LINK
        }
    )
    for other in outside:
        lines.append(f"links to trace {other} (where its events started)")
    for other in linked_from:
        lines.append(f"linked from trace {other} (e.g. a replay of a dead letter)")
    return "\n".join(lines)

"""Hop-by-hop cost of the shop's saga, from the spans ``cascade run`` keeps for ``cascade trace``.

Per hop (the order API, the outbox relay's publish, then each Trigger) three durations:

- **wait**: how long the event sat before the hop began. For a Trigger, the broker's
  ``deliver`` span start minus the end of the span that stored the event (the ingress
  ``POST /<ns>/<broker>`` or the broker's ``send`` of a reply): the time in the log and in the
  dispatcher's queue (ordered Triggers deliver one event per partition at a time). For the
  publish, the relay's ``send`` start minus the end of ``POST /orders``.
- **attempt**: the broker's ``deliver`` span (one HTTP exchange with the subscriber, including
  waiting for a free worker), or the relay's ``send``.
- **handler**: the subscriber's own ``process`` span (its handler and store transaction).

``attempt - handler`` is the transport and the wait for a free gunicorn worker; a large
``wait`` says the hop before it, or the Trigger's ordering, holds events back.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench._report import percentile
from cascade.traces.store import StoredSpan

__all__ = ["Hop", "hops_of"]

_CLIENT, _PRODUCER, _CONSUMER = 3, 4, 5
_NS_PER_MS = 1e6


@dataclass
class Hop:
    name: str
    waits_ms: list[float] = field(default_factory=list)
    attempts_ms: list[float] = field(default_factory=list)
    handlers_ms: list[float] = field(default_factory=list)
    offsets_ms: list[float] = field(default_factory=list)  # start after the saga's first span

    def as_dict(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {"p50": percentile(values, 50), "p99": percentile(values, 99)}

        return {
            "hop": self.name,
            "count": max(len(self.attempts_ms), len(self.handlers_ms)),
            "wait_ms": stats(self.waits_ms),
            "attempt_ms": stats(self.attempts_ms),
            "handler_ms": stats(self.handlers_ms),
            "starts_after_ms": statistics.median(self.offsets_ms) if self.offsets_ms else None,
        }


def _ms(ns: int) -> float:
    return ns / _NS_PER_MS


def hops_of(spans: Iterable[StoredSpan], conversations: Collection[str]) -> list[dict[str, Any]]:
    """The hops of the sagas of ``conversations`` (order ids), in the order they happen."""
    everything = list(spans)
    by_id = {span.span_id: span for span in everything}
    children: dict[str, list[StoredSpan]] = defaultdict(list)
    for span in everything:
        if span.parent_span_id:
            children[span.parent_span_id].append(span)
    first_start: dict[str, int] = {}
    mine: list[StoredSpan] = []
    for span in everything:
        conversation = span.conversation_id
        if conversation is not None and conversation in conversations:
            mine.append(span)
            first_start[conversation] = min(
                first_start.get(conversation, span.start_ns), span.start_ns
            )
    hops: dict[str, Hop] = {}

    def hop(name: str) -> Hop:
        return hops.setdefault(name, Hop(name))

    for span in mine:
        parent = by_id.get(span.parent_span_id or "")
        offset = _ms(span.start_ns - first_start[str(span.conversation_id)])
        if span.kind == _PRODUCER and span.service != "cascade-broker":
            # The outbox relay publishing the order API's event; its parent is POST /orders.
            if parent is not None:
                api = hop(f"{span.service}: {parent.name}")
                api.handlers_ms.append(_ms(parent.duration_ns))
                api.offsets_ms.append(0.0)
            relay = hop(f"{span.service}: publish {span.name.removeprefix('send ')}")
            relay.attempts_ms.append(_ms(span.duration_ns))
            relay.offsets_ms.append(offset)
            if parent is not None:
                relay.waits_ms.append(_ms(span.start_ns - parent.end_ns))
        elif span.kind == _CLIENT and span.name.startswith("deliver "):
            trigger = hop(span.name.removeprefix("deliver "))
            trigger.attempts_ms.append(_ms(span.duration_ns))
            trigger.offsets_ms.append(offset)
            if parent is not None:
                trigger.waits_ms.append(_ms(span.start_ns - parent.end_ns))
            handlers = [c for c in children[span.span_id] if c.kind == _CONSUMER]
            trigger.handlers_ms += [_ms(c.duration_ns) for c in handlers]
    ordered = sorted(hops.values(), key=lambda h: statistics.median(h.offsets_ms or [0.0]))
    return [h.as_dict() for h in ordered]

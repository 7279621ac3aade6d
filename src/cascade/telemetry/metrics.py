"""Prometheus metrics of a function, on an injected registry.

Names follow ``cascade_<noun>_<unit>`` with labels ``function``, ``type``, ``outcome``. The
``type`` label is the CloudEvents type for types the function handles and ``other`` for the
rest, so a sender cannot grow the label space without bound.

Under ``cascade serve`` (several gunicorn workers) values live in prometheus_client's
multiprocess files: the master calls :func:`enable_multiprocess` before forking, ``/metrics``
sums every worker's files, and dead workers are marked in gunicorn's ``child_exit``.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

__all__ = [
    "OUTCOMES",
    "Metrics",
    "enable_multiprocess",
    "mark_process_dead",
    "multiprocess_dir",
]

OUTCOMES = (
    "replied",  # 200 with a reply event
    "acked",  # 204, handler returned None
    "dropped",  # 204, handler raised Drop
    "duplicate",  # stored answer re-sent
    "retry",  # 503, handler raised Retry
    "dead_letter",  # 422: invalid data, no handler for the type, or DeadLetter raised
    "error",  # 500, unexpected exception
    "unavailable",  # 503, the server is shutting down
)

OTHER_TYPE = "other"


class Metrics:
    """The function's counters and histogram, registered on ``registry``."""

    def __init__(self, function: str, registry: CollectorRegistry) -> None:
        self.function = function
        self.registry = registry
        self.events = Counter(
            "cascade_events",
            "CloudEvents handled, by type and outcome.",
            ["function", "type", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "cascade_event_duration_seconds",
            "Time to handle one CloudEvent, from parsed request to answer.",
            ["function", "type"],
            registry=registry,
        )
        self.duplicates = Counter(
            "cascade_duplicates",
            "Deliveries answered with a stored reply because (source, id) was seen before.",
            ["function"],
            registry=registry,
        )
        self.rejected = Counter(
            "cascade_requests_rejected",
            "Requests refused before reaching a handler (not a CloudEvent, too large, ...).",
            ["function", "status"],
            registry=registry,
        )
        self.sender_refusals = Counter(
            "cascade_sender_refusals",
            "CloudEvent requests refused by the sender-identity check, by reason.",
            ["function", "reason"],
            registry=registry,
        )
        self._duplicates = self.duplicates.labels(function)
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._live: list[Collector] = []

    def add_live(self, collector: Collector) -> None:
        """A collector computed at each scrape in the scraped process (e.g. store gauges)."""
        self._live.append(collector)
        if multiprocess_dir() is None:
            self.registry.register(collector)

    def observe(self, event_type: str, outcome: str, seconds: float) -> None:
        # Label children cached: labels() costs more than the increment itself. The key space
        # is bounded (handled types + "other", times the outcomes).
        key = (event_type, outcome)
        children = self._children.get(key)
        if children is None:
            children = (
                self.events.labels(self.function, event_type, outcome),
                self.duration.labels(self.function, event_type),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def unavailable(self) -> None:
        """An event refused with 503 because the server is draining (not parsed: type other)."""
        self.events.labels(self.function, OTHER_TYPE, "unavailable").inc()

    def duplicate(self) -> None:
        self._duplicates.inc()

    def reject(self, status: int) -> None:
        self.rejected.labels(self.function, str(status)).inc()

    def refuse_sender(self, reason: str) -> None:
        self.sender_refusals.labels(self.function, reason).inc()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type (every worker's values in multiprocess mode)."""
        directory = multiprocess_dir()
        if directory is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            for collector in self._live:
                registry.register(collector)
        else:
            registry = self.registry
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def enable_multiprocess(directory: Path) -> None:
    """Switch this process (and children forked later) to multiprocess metric values.

    prometheus_client picks its value class when it is first imported; re-pick it now that
    the directory is set, so metrics created afterwards (in workers) write to files. Stale
    files from an earlier run are removed: their counts belong to processes long gone.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(str(directory / "*.db")):
        os.remove(stale)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def mark_process_dead(pid: int) -> None:
    """gunicorn ``child_exit``: drop a dead worker's live-gauge files (counters are kept)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]

"""A function's own metrics: counters counted when its work commits, gauges read from its store.

```python
fn = Function("order", metadata=Base.metadata)
ORDERS = fn.metrics.counter("shop_orders", "Orders that reached a state.", ["state"])

@fn.metrics.gauge("shop_orders_pending", "Orders waiting for their saga to end.")
def pending(session: Session) -> float:
    return session.scalar(select(func.count()).where(Order.state == "PENDING")) or 0

@fn.on(PaymentAuthorized)
def authorized(event, ctx):
    ...
    ORDERS.labels(state="confirmed").inc()    # counted only if this event's transaction commits
```

- **Counters** (``cascade_``-free names are fine: ``shop_orders`` is exposed as
  ``shop_orders_total``) get a ``function`` label first, like the runtime's own metrics. An
  increment made inside a handler or an ``@fn.route`` view is held until that work commits:
  a handler that raises (retry, dead letter, error, ``Drop``) or a view that raises counts
  nothing, so a retried event is counted once. Outside a handler (a background thread) it
  counts at once. They are prometheus_client counters created in each worker after fork, so
  under ``cascade serve`` the multiprocess files sum every worker.
- **Gauges** are computed at scrape time from the function's store (a read-only session),
  so they are right whichever worker answers the scrape and survive restarts. With several
  pods sharing one database every pod reports the same value: aggregate them with ``max``.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

__all__ = [
    "BoundMetrics",
    "CounterHandle",
    "FunctionMetrics",
    "GaugeCallback",
    "MetricsScope",
    "commit_counts",
    "metrics_scope",
]

_log = logging.getLogger("cascade.metrics")
_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_RESERVED_LABELS: Final = frozenset({"function", "le", "quantile"})
_RUNTIME_METRICS: Final = frozenset(
    {
        "cascade_events",
        "cascade_event_duration_seconds",
        "cascade_duplicates",
        "cascade_requests_rejected",
        "cascade_outbox_pending",
        "cascade_outbox_failed",
    }
)

GaugeCallback = Callable[[Session], "float | Mapping[tuple[str, ...], float]"]
"""Reads the store, returns one value (no labels) or one value per tuple of label values."""

G = TypeVar("G", bound=GaugeCallback)


def _check_name(name: str, labels: Sequence[str], taken: set[str]) -> tuple[str, ...]:
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("__"):
        raise ValueError(f"metric name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
    if name in _RUNTIME_METRICS:
        # A clash would only fail when the first app is built, far from the cause.
        raise ValueError(f"metric name {name!r} is the runtime's own")
    if name in taken:
        raise ValueError(f"metric {name!r} is declared twice")
    checked = tuple(labels)
    for label in checked:
        if not isinstance(label, str) or not _NAME.match(label) or label.startswith("__"):
            raise ValueError(f"metric {name!r}: label {label!r} is not a valid label name")
        if label in _RESERVED_LABELS:
            raise ValueError(f"metric {name!r}: label {label!r} is reserved")
    if len(set(checked)) != len(checked):
        raise ValueError(f"metric {name!r}: a label is repeated in {list(checked)}")
    return checked


@dataclass(frozen=True)
class _CounterSpec:
    name: str
    documentation: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class _GaugeSpec:
    name: str
    documentation: str
    labels: tuple[str, ...]
    read: GaugeCallback


class BoundMetrics:
    """One runtime's instances of the declared metrics (one per app, so per worker)."""

    def __init__(self, function: str, counters: Mapping[str, Counter]) -> None:
        self.function = function
        self.counters = dict(counters)
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def add(self, name: str, values: tuple[str, ...], amount: float) -> None:
        key = (name, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.counters[name].labels(self.function, *values)
        child.inc(amount)


class MetricsScope:
    """Increments made while one event or request is handled; applied when it commits."""

    __slots__ = ("bound", "pending")

    def __init__(self, bound: BoundMetrics) -> None:
        self.bound = bound
        self.pending: list[tuple[str, tuple[str, ...], float]] = []

    def apply(self) -> None:
        pending, self.pending = self.pending, []
        for name, values, amount in pending:
            self.bound.add(name, values, amount)

    def discard(self) -> None:
        self.pending.clear()


_scope: contextvars.ContextVar[MetricsScope | None] = contextvars.ContextVar(
    "cascade_metrics_scope", default=None
)


class metrics_scope:  # noqa: N801 - used like a function: ``with metrics_scope(bound) as s:``
    """Collect increments for the duration of one handler call or view (runtime use)."""

    __slots__ = ("_scope", "_token")

    def __init__(self, bound: BoundMetrics | None) -> None:
        self._scope = MetricsScope(bound) if bound is not None and bound.counters else None
        self._token: contextvars.Token[MetricsScope | None] | None = None

    def __enter__(self) -> MetricsScope | None:
        if self._scope is not None:
            self._token = _scope.set(self._scope)
        return self._scope

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _scope.reset(self._token)
        if self._scope is not None:
            self._scope.discard()  # anything not applied by now did not commit


def commit_counts() -> None:
    """Apply the increments held for the current handler or view: its work has committed."""
    scope = _scope.get()
    if scope is not None:
        scope.apply()


class CounterHandle:
    """A declared counter; ``labels(...)`` picks a series, ``inc()`` counts."""

    def __init__(self, owner: FunctionMetrics, spec: _CounterSpec) -> None:
        self._owner = owner
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    def labels(self, *values: str, **by_name: str) -> _CounterChild:
        labels = self.spec.labels
        if values and by_name:
            raise TypeError("give label values by position or by name, not both")
        if by_name:
            unknown = sorted(set(by_name) - set(labels))
            missing = [label for label in labels if label not in by_name]
            if unknown or missing:
                raise ValueError(
                    f"counter {self.name!r} has labels {list(labels)}; "
                    f"got {sorted(by_name)} (missing {missing}, unknown {unknown})"
                )
            values = tuple(by_name[label] for label in labels)
        if len(values) != len(labels):
            raise ValueError(
                f"counter {self.name!r} has labels {list(labels)}: give {len(labels)} values, "
                f"got {len(values)}"
            )
        return _CounterChild(self, tuple(str(v) for v in values))

    def inc(self, amount: float = 1.0) -> None:
        """Count on a counter without labels."""
        self.labels().inc(amount)


class _CounterChild:
    __slots__ = ("_handle", "_values")

    def __init__(self, handle: CounterHandle, values: tuple[str, ...]) -> None:
        self._handle = handle
        self._values = values

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up: amount must be >= 0")
        name = self._handle.name
        scope = _scope.get()
        if scope is not None and name in scope.bound.counters:
            scope.pending.append((name, self._values, amount))
            return
        bound = self._handle._owner.bound
        if bound is None:
            raise RuntimeError(
                f"counter {name!r} counted before the function's app was created "
                "(count inside handlers, routes or threads they start)"
            )
        bound.add(name, self._values, amount)


class FunctionMetrics:
    """The metrics a function declares (``fn.metrics``), created per app by the runtime."""

    def __init__(self, function: str) -> None:
        self.function = function
        self._counters: dict[str, _CounterSpec] = {}
        self._gauges: dict[str, _GaugeSpec] = {}
        self.bound: BoundMetrics | None = None  # the newest app's, for counts outside a scope

    def _taken(self) -> set[str]:
        return set(self._counters) | set(self._gauges)

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> CounterHandle:
        """Declare a counter (exposed as ``<name>_total``, labels ``function`` + ``labels``)."""
        name = name.removesuffix("_total") if isinstance(name, str) else name
        checked = _check_name(name, labels, self._taken())
        spec = _CounterSpec(name, documentation, checked)
        self._counters[name] = spec
        return CounterHandle(self, spec)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Callable[[G], G]:
        """Declare a gauge computed at scrape time by the decorated ``read(session)``."""
        checked = _check_name(name, labels, self._taken())

        def register(read: G) -> G:
            self._gauges[name] = _GaugeSpec(name, documentation, checked, read)
            return read

        return register

    @property
    def declared(self) -> list[str]:
        """Exposed names of every declared metric (counters with their ``_total``)."""
        return sorted([f"{n}_total" for n in self._counters] + list(self._gauges))

    def bind(self, registry: CollectorRegistry) -> BoundMetrics:
        """Create the counters on ``registry`` (in the worker, after fork); runtime use."""
        counters = {
            spec.name: Counter(
                spec.name, spec.documentation, ["function", *spec.labels], registry=registry
            )
            for spec in self._counters.values()
        }
        self.bound = BoundMetrics(self.function, counters)
        return self.bound

    def gauge_collector(self, open_session: Callable[[], Session]) -> Collector | None:
        """A collector that computes the gauges at each scrape (None when there are none)."""
        if not self._gauges:
            return None
        return _StoreGauges(self.function, list(self._gauges.values()), open_session)


class _StoreGauges(Collector):
    def __init__(
        self, function: str, gauges: list[_GaugeSpec], open_session: Callable[[], Session]
    ) -> None:
        self._function = function
        self._gauges = gauges
        self._open_session = open_session

    def describe(self) -> list[Metric]:
        # Described without running queries, so registering this collector reads nothing.
        return [
            GaugeMetricFamily(g.name, g.documentation, labels=["function", *g.labels])
            for g in self._gauges
        ]

    def collect(self) -> Iterator[Metric]:
        session = self._open_session()
        try:
            for gauge in self._gauges:
                try:
                    value = gauge.read(session)
                    family = _family(self._function, gauge, value)
                except Exception:  # a broken gauge must not break /metrics for the rest
                    _log.exception("metric %s: reading the gauge failed", gauge.name)
                    session.rollback()
                    continue
                yield family
        finally:
            session.rollback()
            session.close()


def _family(function: str, gauge: _GaugeSpec, value: object) -> GaugeMetricFamily:
    family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=["function", *gauge.labels])
    if isinstance(value, Mapping):
        for values, number in value.items():
            key = values if isinstance(values, tuple) else (values,)
            if len(key) != len(gauge.labels):
                raise ValueError(
                    f"gauge {gauge.name!r} has labels {list(gauge.labels)}; a key has "
                    f"{len(key)} values: {key!r}"
                )
            family.add_metric([function, *(str(v) for v in key)], float(number))
    else:
        if gauge.labels:
            raise ValueError(
                f"gauge {gauge.name!r} has labels {list(gauge.labels)}: return a mapping of "
                "label values to numbers"
            )
        if not isinstance(value, int | float):
            raise TypeError(f"gauge {gauge.name!r} returned {type(value).__name__}, not a number")
        family.add_metric([function], float(value))
    return family

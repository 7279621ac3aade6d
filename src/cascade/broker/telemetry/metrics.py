"""Prometheus metrics of the broker, named ``cascade_broker_<noun>_<unit>``.

The registry is injected so tests and embedding processes keep their own.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["BrokerMetrics", "Outcome"]

# Deliveries are quick on a laptop but the Kafka default timeout is 600 s.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Outcome(Enum):
    DELIVERED = "delivered"  # the subscriber answered < 300 (and its reply, if any, was stored)
    RETRIED = "retried"  # one more attempt after a retryable failure
    DEAD_LETTERED = "dead-lettered"  # the dead-letter sink took the event
    DROPPED = "dropped"  # no sink, the sink failed too, or a reply beyond --max-hops


class BrokerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._accepted = Counter(
            "cascade_broker_events_accepted",
            "Events stored by the ingress (answered 202), per Broker.",
            ["namespace", "broker"],
            registry=registry,
        )
        self._rejected = Counter(
            "cascade_broker_events_rejected",
            "Ingress requests not stored, per Broker path and HTTP status.",
            ["code"],
            registry=registry,
        )
        self._deliveries = Counter(
            "cascade_broker_deliveries",
            "Delivery outcomes per Trigger: delivered, retried, dead-lettered, dropped.",
            ["namespace", "trigger", "outcome"],
            registry=registry,
        )
        self._latency = Histogram(
            "cascade_broker_dispatch_latency_seconds",
            "Duration of one delivery attempt (subscriber or dead-letter sink), per Trigger.",
            ["namespace", "trigger"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self._lag = Gauge(
            "cascade_broker_lag_events",
            "Events not yet committed by a Trigger (end offset minus committed), at scrape time.",
            ["namespace", "trigger"],
            registry=registry,
        )

        # labels() costs several µs per call; the label sets are few, so keep the children.
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def accepted(self, namespace: str, broker: str, count: int = 1) -> None:
        self._child(self._accepted, namespace, broker).inc(count)

    def rejected(self, code: int) -> None:
        self._child(self._rejected, str(code)).inc()

    def delivery(self, namespace: str, trigger: str, outcome: Outcome) -> None:
        self._child(self._deliveries, namespace, trigger, outcome.value).inc()

    def attempt_latency(self, namespace: str, trigger: str, seconds: float) -> None:
        self._child(self._latency, namespace, trigger).observe(seconds)

    def set_lag(self, namespace: str, trigger: str, lag: int) -> None:
        self._lag.labels(namespace, trigger).set(lag)

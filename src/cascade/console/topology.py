"""The graph the console draws, from the manifests ``cascade run`` planned with, and the live
numbers on its edges, from the broker's Prometheus metrics.

Nodes: the event sources (functions a SinkBinding points at a Broker), each Broker, each
Trigger, each function. Edges: source → Broker (publishes), Broker → Trigger (filter),
Trigger → function (delivery; carries the Trigger's counters and lag), function → Broker
(replies, from the ``cascade.dev/reply-types`` annotation) and Trigger → dead-letter sink.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from cascade.broker.topology import TriggerConfig
from cascade.runner.plan import RunPlan

__all__ = ["OUTCOME_COUNTERS", "function_at", "graph_of", "stats_from_metrics"]

OUTCOME_COUNTERS: Final = ("delivered", "retried", "dead-lettered", "dropped")
_DELIVERIES: Final = "cascade_broker_deliveries"
_ACCEPTED: Final = "cascade_broker_events_accepted"
_LAG: Final = "cascade_broker_lag_events"


def _filter_text(trigger: TriggerConfig) -> str:
    """``type=order.created`` for the usual exact-type filter; the filter's JSON otherwise."""
    attributes = trigger.filter_spec.get("filter", {})
    if isinstance(attributes, dict):
        attributes = attributes.get("attributes", attributes)
    if isinstance(attributes, dict) and set(trigger.filter_spec) == {"filter"}:
        return ", ".join(f"{k}={v}" for k, v in sorted(attributes.items())) or "every event"
    if not trigger.filter_spec:
        return "every event"
    return str(trigger.filter_spec)


def function_at(url: str | None, functions: Mapping[str, str]) -> str | None:
    """The name of the function (name → base URL) serving ``url``, if one does."""
    if not url:
        return None
    for name, base in functions.items():
        base = base.rstrip("/")
        if url.rstrip("/") == base or url.startswith(base + "/"):
            return name
    return None


def graph_of(plan: RunPlan) -> dict[str, Any]:
    """Nodes and edges (JSON-ready) of the planned run."""
    functions = {fn.name: fn.url for fn in plan.functions}
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for (namespace, name), _broker in plan.topology.brokers.items():
        key = f"{namespace}/{name}"
        nodes.append(
            {"id": f"broker:{key}", "kind": "broker", "label": f"Broker {key}", "url": None}
        )
    for fn in plan.functions:
        service = next((s for (_ns, n), s in plan.topology.services.items() if n == fn.name), None)
        replies = list(service.reply_types) if service is not None else []
        nodes.append(
            {
                "id": f"function:{fn.name}",
                "kind": "function",
                "label": fn.name,
                "url": fn.url,
                "replies": replies,
            }
        )
        if fn.sink is not None:
            target = next((k for k, url in plan.ingress.items() if url == fn.sink), None)
            if target is not None:
                edges.append(
                    {
                        "id": f"publish:{fn.name}",
                        "kind": "publish",
                        "from": f"function:{fn.name}",
                        "to": f"broker:{target}",
                        "broker": target,
                    }
                )
        if replies:
            for trigger_name in fn.triggers:
                namespace = trigger_name.split("/", 1)[0]
                for ns, name in plan.topology.brokers:
                    if ns != namespace:
                        continue
                    edge_id = f"reply:{fn.name}:{ns}/{name}"
                    if all(edge["id"] != edge_id for edge in edges):
                        edges.append(
                            {
                                "id": edge_id,
                                "kind": "reply",
                                "from": f"function:{fn.name}",
                                "to": f"broker:{ns}/{name}",
                                "types": replies,
                            }
                        )
    for trigger in plan.topology.triggers:
        key = f"{trigger.namespace}/{trigger.name}"
        nodes.append(
            {
                "id": f"trigger:{key}",
                "kind": "trigger",
                "label": trigger.name,
                "namespace": trigger.namespace,
                "filter": _filter_text(trigger),
                "ordered": trigger.ordered,
                "retry": trigger.delivery.retry,
            }
        )
        edges.append(
            {
                "id": f"filter:{key}",
                "kind": "filter",
                "from": f"broker:{trigger.namespace}/{trigger.broker}",
                "to": f"trigger:{key}",
            }
        )
        subscriber = function_at(trigger.subscriber, functions)
        edges.append(
            {
                "id": f"deliver:{key}",
                "kind": "deliver",
                "from": f"trigger:{key}",
                "to": f"function:{subscriber}" if subscriber else None,
                "subscriber": trigger.subscriber,
                "trigger": key,
            }
        )
        sink = function_at(trigger.delivery.dead_letter_sink, functions)
        if sink is not None:
            edges.append(
                {
                    "id": f"dead-letter:{key}",
                    "kind": "dead-letter",
                    "from": f"trigger:{key}",
                    "to": f"function:{sink}",
                    "trigger": key,
                }
            )
    return {"nodes": nodes, "edges": edges}


def stats_from_metrics(text: str) -> dict[str, Any]:
    """Counters per Trigger (``namespace/name``: delivered, retried, dead-lettered, dropped,
    lag) and events accepted per Broker, from the broker's ``/metrics`` text."""
    triggers: dict[str, dict[str, float]] = {}
    brokers: dict[str, float] = {}

    def trigger_row(labels: Mapping[str, str]) -> dict[str, float]:
        key = f"{labels.get('namespace', 'default')}/{labels.get('trigger', '')}"
        row = triggers.get(key)
        if row is None:
            row = triggers[key] = {outcome: 0.0 for outcome in OUTCOME_COUNTERS} | {"lag": 0.0}
        return row

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == f"{_DELIVERIES}_total" and labels.get("outcome") in OUTCOME_COUNTERS:
                trigger_row(labels)[labels["outcome"]] = sample.value
            elif sample.name == _LAG:
                trigger_row(labels)["lag"] = sample.value
            elif sample.name == f"{_ACCEPTED}_total":
                brokers[f"{labels.get('namespace', 'default')}/{labels.get('broker', '')}"] = (
                    sample.value
                )
    return {"triggers": triggers, "brokers": brokers}

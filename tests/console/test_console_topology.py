"""The graph the console draws from the shop's manifests, and the numbers from /metrics."""

from __future__ import annotations

from pathlib import Path

from cascade.console.topology import stats_from_metrics
from tests.console.conftest import METRICS, shop_graph


def test_the_shop_graph_has_every_trigger_function_and_return_path(tmp_path: Path) -> None:
    graph = shop_graph(tmp_path)
    kinds: dict[str, list[str]] = {}
    for node in graph["nodes"]:
        kinds.setdefault(node["kind"], []).append(node["label"])
    assert kinds["broker"] == ["Broker default/shop"]
    assert sorted(kinds["function"]) == [
        "dead-letter",
        "inventory",
        "notification",
        "order",
        "payment",
    ]
    assert len(kinds["trigger"]) == 12
    edges = {edge["id"]: edge for edge in graph["edges"]}
    deliver = edges["deliver:default/payment-inventory-reserved"]
    assert deliver["from"] == "trigger:default/payment-inventory-reserved"
    assert deliver["to"] == "function:payment"
    assert edges["filter:default/payment-inventory-reserved"]["from"] == "broker:default/shop"
    # Every Trigger of the shop dead-letters to the dead-letter function.
    sinks = [e for e in graph["edges"] if e["kind"] == "dead-letter"]
    assert len(sinks) == 12
    assert {e["to"] for e in sinks} == {"function:dead-letter"}
    # The order API publishes (its SinkBinding); the functions that reply, reply.
    assert edges["publish:order"]["to"] == "broker:default/shop"
    replies = {e["from"] for e in graph["edges"] if e["kind"] == "reply"}
    assert replies == {"function:order", "function:inventory", "function:payment"}
    trigger = next(n for n in graph["nodes"] if n["label"] == "payment-inventory-reserved")
    assert trigger["filter"] == "type=com.example.shop.inventory.reserved"
    assert trigger["retry"] == 5


def test_stats_per_trigger_and_broker() -> None:
    stats = stats_from_metrics(METRICS)
    assert stats["triggers"]["default/payment-inventory-reserved"] == {
        "delivered": 0.0,
        "retried": 5.0,
        "dead-lettered": 1.0,
        "dropped": 0.0,
        "lag": 0.0,
    }
    assert stats["triggers"]["default/inventory-order-created"]["lag"] == 2.0
    assert stats["brokers"] == {"default/shop": 8.0}
    assert stats_from_metrics("") == {"triggers": {}, "brokers": {}}

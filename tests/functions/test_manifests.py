"""k8s/rendered/shop.yaml: it loads like the webhook would accept it, and it agrees with the
functions (what they consume, reply and publish), with no Trigger that receives its own subscriber's
replies."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cascade.broker.banner import loop_risks
from cascade.broker.topology import Topology, load_topology
from cascade.events import bound_type
from functions.payment.faults import Faults
from functions.shop.events import SHOP_EVENTS
from tests.shop import FUNCTIONS, ROOT, load

MANIFEST = ROOT / "k8s" / "rendered" / "shop.yaml"
URLS = {("default", name): f"http://127.0.0.1:{9100 + i}" for i, name in enumerate(FUNCTIONS)}
DEAD_LETTERS = URLS[("default", "dead-letter")] + "/dead-letters"


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology([MANIFEST], service_urls=URLS)


def produced_by(name: str) -> set[str]:
    module = load(name)
    published = {bound_type(model) for model in getattr(module, "PUBLISHES", ())}
    return set(module.fn.produces()) | published


def test_loads_one_broker_five_services_and_a_trigger_per_subscription(
    topology: Topology,
) -> None:
    assert list(topology.brokers) == [("default", "shop")]
    assert sorted(name for _, name in topology.services) == sorted(FUNCTIONS)
    # The render also holds cluster-only kinds (SinkBinding, NetworkPolicy, EventType, ...):
    # the local broker names each one it ignores, and ignores nothing else.
    assert topology.notices
    assert all(n.startswith("ignored kind ") for n in topology.notices), topology.notices
    assert not [n for n in topology.notices if n.split()[2] in ("Broker", "Trigger", "Service")]
    subscriptions = {
        (name, event_type) for name in FUNCTIONS for event_type in load(name).fn.consumes()
    }
    assert len(topology.triggers) == len(subscriptions)


def test_every_function_folder_is_a_service_with_its_image() -> None:
    folders = sorted(p.parent.name for p in (ROOT / "functions").glob("*/func.py"))
    assert folders == sorted(FUNCTIONS)
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d["kind"] == "Service"]
    images = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in documents
    }
    assert {name: image.split(":")[0] for name, image in images.items()} == {
        name: f"cascade-{name}" for name in FUNCTIONS
    }


def test_reply_types_annotation_is_what_the_handlers_reply(topology: Topology) -> None:
    for (_, name), service in topology.services.items():
        assert list(service.reply_types) == load(name).fn.produces(), name


def test_triggers_are_named_service_dash_event_and_filter_on_type(topology: Topology) -> None:
    for trigger in topology.triggers:
        assert trigger.subscriber_service is not None
        event_type = trigger.filter_spec["filter"]["attributes"]["type"]
        assert list(trigger.filter_spec["filter"]["attributes"]) == ["type"]
        suffix = event_type.removeprefix("com.example.shop.").replace(".", "-")
        assert trigger.name == f"{trigger.subscriber_service.name}-{suffix}"
        assert trigger.broker == "shop"


def test_every_trigger_retries_with_backoff_then_dead_letters(topology: Topology) -> None:
    for trigger in topology.triggers:
        delivery = trigger.delivery
        assert delivery.retry >= 3, trigger.name
        assert delivery.backoff_policy == "exponential", trigger.name
        assert delivery.dead_letter_sink == DEAD_LETTERS, trigger.name
    broker = topology.brokers[("default", "shop")]
    assert broker.delivery is not None
    assert broker.delivery.dead_letter_sink == DEAD_LETTERS


def test_payment_times_out_before_an_injected_hang_ends(topology: Topology) -> None:
    [payment] = [t for t in topology.triggers if t.name == "payment-inventory-reserved"]
    assert payment.delivery.timeout < Faults().hang_seconds
    manifest_env = {
        e["name"]: e["value"]
        for d in yaml.safe_load_all(MANIFEST.read_text())
        if d["kind"] == "Service" and d["metadata"]["name"] == "payment"
        for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e
    }
    assert payment.delivery.timeout < float(manifest_env["PAYMENT_HANG_SECONDS"])
    others = [t for t in topology.triggers if t is not payment]
    assert all(t.delivery.timeout > payment.delivery.timeout for t in others)


def test_state_machines_get_their_events_in_order(topology: Topology) -> None:
    ordered = {t.name for t in topology.triggers if t.ordered}
    owners = {t.name for t in topology.triggers if t.name.startswith(("inventory-", "order-"))}
    assert ordered == owners


# --------------------------------------------------------------------------- consistency


def test_every_filtered_type_is_produced_by_some_function(topology: Topology) -> None:
    produced = set().union(*(produced_by(name) for name in FUNCTIONS))
    for trigger in topology.triggers:
        matched = {
            t
            for t in produced
            if trigger.filter.matches({"specversion": "1.0", "id": "x", "source": "/x", "type": t})
        }
        assert matched, f"{trigger.name} waits for a type no function produces"


def test_every_consumed_type_has_a_trigger_to_its_function(topology: Topology) -> None:
    for name in FUNCTIONS:
        for event_type in load(name).fn.consumes():
            attributes = {"specversion": "1.0", "id": "x", "source": "/x", "type": event_type}
            routes = [
                t
                for t in topology.triggers
                if t.subscriber_service is not None
                and t.subscriber_service.name == name
                and t.filter.matches(attributes)
            ]
            assert len(routes) == 1, f"{name} consumes {event_type} through {routes}"


def test_every_shop_event_is_produced_and_consumed() -> None:
    produced = set().union(*(produced_by(name) for name in FUNCTIONS))
    consumed = set().union(*(set(load(name).fn.consumes()) for name in FUNCTIONS))
    shop_types = {bound_type(model) for model in SHOP_EVENTS}
    assert produced == shop_types
    assert consumed == shop_types


def test_no_trigger_receives_its_own_replies(topology: Topology) -> None:
    assert loop_risks(topology.triggers) == []
    for trigger in topology.triggers:
        assert trigger.subscriber_service is not None
        own = produced_by(trigger.subscriber_service.name)
        for event_type in own:
            attributes = {"specversion": "1.0", "id": "x", "source": "/x", "type": event_type}
            assert not trigger.filter.matches(attributes), (trigger.name, event_type)


def test_the_manifest_is_plain_yaml_every_tool_reads() -> None:
    documents = list(yaml.safe_load_all(Path(MANIFEST).read_text()))
    kinds = [d["kind"] for d in documents]
    assert kinds.count("Broker") == 1
    assert kinds.count("Service") == len(FUNCTIONS)
    assert all(d["metadata"].get("namespace") == "default" for d in documents)

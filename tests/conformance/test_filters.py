"""§2 Trigger filters (Kafka semantics) and fan-out."""

from __future__ import annotations

import pytest

from tests.conformance.conftest import StartBroker
from tests.conformance.harness import BrokerProcess, Subscriber, broker_manifest, trigger_manifest

# trigger name → (filter fields of trigger_manifest); each delivers to /<name>.
TRIGGERS: dict[str, dict[str, object]] = {
    "everything": {},
    "legacy": {"filter_attributes": {"type": "com.example.a", "source": "/orders"}},
    # Kafka drops entries with an empty value: matches even when "region" is missing.
    "legacy-empty": {"filter_attributes": {"type": "com.example.a", "region": ""}},
    "legacy-ext": {"filter_attributes": {"region": "eu"}},
    "exact": {"filters": [{"exact": {"type": "com.example.a"}}]},
    "prefix": {"filters": [{"prefix": {"type": "com.example."}}]},
    "suffix": {"filters": [{"suffix": {"source": "/orders"}}]},
    "all": {"filters": [{"all": [{"prefix": {"type": "com."}}, {"exact": {"region": "eu"}}]}]},
    "any": {
        "filters": [{"any": [{"exact": {"type": "com.example.b"}}, {"exact": {"region": "us"}}]}]
    },
    "not": {"filters": [{"not": {"exact": {"type": "com.example.a"}}}]},
    "cesql": {"filters": [{"cesql": "EXISTS region AND region = 'eu' AND type LIKE 'com.%'"}]},
    # CESQL: a missing attribute is an evaluation error, so no match even under NOT.
    "cesql-missing": {"filters": [{"cesql": "NOT (region = 'eu')"}]},
    # spec.filters wins over spec.filter.
    "filters-win": {
        "filter_attributes": {"type": "com.example.a"},
        "filters": [{"exact": {"type": "com.example.b"}}],
    },
    # Filters run after the dispatcher adds knativekafkapartition.
    "partition": {"filters": [{"exact": {"knativekafkapartition": "0"}}]},
    # Two Triggers to the same subscriber: each delivers its own copy.
    "fan-a": {"filters": [{"exact": {"type": "com.example.fan"}}], "path": "/fan"},
    "fan-b": {"filters": [{"exact": {"type": "com.example.fan"}}], "path": "/fan"},
}

EVENTS = [
    # id, type, source, extensions
    ("e1", "com.example.a", "/orders", {}),
    ("e2", "com.example.a", "/orders", {"region": "eu"}),
    ("e3", "com.example.b", "/payments", {"region": "us"}),
    ("e4", "org.other.c", "/x/orders", {}),
    ("e5", "com.example.b", "/orders", {"region": "eu"}),
    ("fan", "com.example.fan", "/fan", {}),
]

EXPECTED = {
    "everything": {"e1", "e2", "e3", "e4", "e5", "fan"},
    "legacy": {"e1", "e2"},
    "legacy-empty": {"e1", "e2"},
    "legacy-ext": {"e2", "e5"},
    "exact": {"e1", "e2"},
    "prefix": {"e1", "e2", "e3", "e5", "fan"},
    "suffix": {"e1", "e2", "e4", "e5"},
    "all": {"e2", "e5"},
    "any": {"e3", "e5"},
    "not": {"e3", "e4", "e5", "fan"},
    "cesql": {"e2", "e5"},
    "cesql-missing": {"e3"},
    "filters-win": {"e3", "e5"},
}


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    triggers = []
    for name, options in TRIGGERS.items():
        options = dict(options)
        path = str(options.pop("path", f"/{name}"))
        triggers.append(trigger_manifest(name, subscriber.url(path), **options))  # type: ignore[arg-type]
    broker = start_broker([broker_manifest(), *triggers])
    for event_id, event_type, source, extensions in EVENTS:
        broker.publish(event_id, event_type, source=source, **extensions)
    broker.wait_idle()
    return broker


def ids(subscriber: Subscriber, path: str) -> set[str]:
    return {r.ce["id"] for r in subscriber.received(path)}


@pytest.mark.parametrize("trigger", sorted(EXPECTED))
def test_filter_dialect(broker: BrokerProcess, subscriber: Subscriber, trigger: str) -> None:
    assert ids(subscriber, f"/{trigger}") == EXPECTED[trigger]


def test_each_match_is_delivered_once_per_trigger(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    everything = [r.ce["id"] for r in subscriber.received("/everything")]
    assert sorted(everything) == sorted(e[0] for e in EVENTS)


def test_fan_out_to_the_same_subscriber_delivers_one_copy_per_trigger(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    fan = subscriber.received("/fan")
    assert [r.ce["id"] for r in fan] == ["fan", "fan"]


def test_filter_on_the_partition_extension(broker: BrokerProcess, subscriber: Subscriber) -> None:
    everything = subscriber.received("/everything")
    on_zero = {r.ce["id"] for r in everything if r.ce["knativekafkapartition"] == "0"}
    assert on_zero, "no event landed on partition 0: the test would prove nothing"
    assert ids(subscriber, "/partition") == on_zero


def test_unmatched_events_still_advance_every_cursor(broker: BrokerProcess) -> None:
    for trigger in broker.triggers():
        assert trigger["lag"] == 0
        assert sum(p["committed"] for p in trigger["partitions"]) == len(EVENTS)

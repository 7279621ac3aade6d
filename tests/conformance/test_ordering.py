"""§6 Kafka specifics: ordered vs unordered delivery, partition and offset extensions."""

from __future__ import annotations

from collections import defaultdict

import pytest

from cascade.broker.log.partitioner import partition_for_key
from tests.conformance.conftest import StartBroker
from tests.conformance.harness import (
    Answer,
    BrokerProcess,
    Received,
    Subscriber,
    broker_manifest,
    trigger_manifest,
)

PARTITIONS = 10


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    # The first attempt at the first event fails: in ordered mode its retry blocks its key.
    failed_once: set[str] = set()

    def ordered_answer(received: Received) -> Answer:
        if received.ce["id"] == "seq-00" and "seq-00" not in failed_once:
            failed_once.add("seq-00")
            return Answer(503, delay=0.05)
        return Answer(200, delay=0.02)

    subscriber.program("/ordered", then=ordered_answer)
    subscriber.program("/unordered", then=Answer(200, delay=0.3))
    return start_broker(
        [
            broker_manifest(),
            trigger_manifest(
                "ordered",
                subscriber.url("/ordered"),
                filters=[{"exact": {"type": "seq"}}],
                delivery={"retry": 2, "backoffDelay": "PT0.1S"},
                ordered=True,
            ),
            trigger_manifest(
                "unordered",
                subscriber.url("/unordered"),
                filters=[{"exact": {"type": "par"}}],
                ordered=False,
            ),
            trigger_manifest("meta", subscriber.url("/meta")),
        ]
    )


def test_ordered_delivery_keeps_order_per_key_through_retries(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    keys = ["red", "blue"]
    for n in range(20):
        broker.publish(f"seq-{n:02d}", "seq", partitionkey=keys[n % 2])
    subscriber.wait_for("/ordered", 21)  # 20 events + 1 retry
    per_key: dict[str, list[str]] = defaultdict(list)
    for received in subscriber.received("/ordered"):
        per_key[received.ce["partitionkey"]].append(received.ce["id"])
    assert per_key["red"] == ["seq-00", *(f"seq-{n:02d}" for n in range(0, 20, 2))]
    assert per_key["blue"] == [f"seq-{n:02d}" for n in range(1, 20, 2)]
    # Different partitions run in parallel; one partition never has two in flight.
    if partition_for_key("red", PARTITIONS) != partition_for_key("blue", PARTITIONS):
        assert subscriber.max_in_flight["/ordered"] <= 2
    else:
        assert subscriber.max_in_flight["/ordered"] == 1


def test_unordered_delivery_runs_concurrently_even_within_a_partition(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    for n in range(8):
        broker.publish(f"par-{n}", "par", partitionkey="one-key")
    received = subscriber.wait_for("/unordered", 8)
    assert len({r.ce["knativekafkapartition"] for r in received}) == 1
    assert subscriber.max_in_flight["/unordered"] > 1


def test_partition_and_offset_extensions(broker: BrokerProcess, subscriber: Subscriber) -> None:
    broker.wait_idle()
    for key in ("alpha", "beta", "gamma"):
        for n in range(3):
            broker.publish(f"meta-{key}-{n}", "meta", partitionkey=key)
    for n in range(10):
        broker.publish(f"meta-keyless-{n}", "meta")
    broker.wait_idle()
    everything = subscriber.received("/meta")
    assert {r.ce["id"] for r in everything} >= {f"meta-keyless-{n}" for n in range(10)}
    for received in everything:
        key = received.ce.get("partitionkey")
        if key in ("alpha", "beta", "gamma"):
            # The Kafka default partitioner: murmur2(key) % partitions.
            assert received.ce["knativekafkapartition"] == str(partition_for_key(key, PARTITIONS))
    offsets: dict[str, list[int]] = defaultdict(list)
    for received in everything:
        offsets[received.ce["knativekafkapartition"]].append(int(received.ce["knativekafkaoffset"]))
    for partition, seen in offsets.items():
        # "meta" sees every event of the log: per partition, offsets 0, 1, 2, ... without gaps.
        assert sorted(seen) == list(range(len(seen))), partition
    keyless = {r.ce["knativekafkapartition"] for r in everything if "partitionkey" not in r.ce}
    assert len(keyless) > 1  # keyless events spread over partitions

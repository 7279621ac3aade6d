"""The same broker on a Kafka-protocol log (Tansu): delivery, partitions, offsets kept in Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from scripts.kafka_server import tansu_broker

from cascade.broker.log.partitioner import partition_for_key
from tests.conformance.harness import (
    BrokerProcess,
    Subscriber,
    broker_manifest,
    trigger_manifest,
    wait_for_event,
    write_manifests,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with tansu_broker() as servers:
        yield servers


def test_delivery_and_committed_offsets_on_kafka(
    tmp_path: Path, subscriber: Subscriber, bootstrap: str
) -> None:
    manifests = write_manifests(
        tmp_path / "m.yaml",
        [
            broker_manifest(namespace="kafkalog"),
            trigger_manifest(
                "ordered", subscriber.url("/kafka"), namespace="kafkalog", ordered=True
            ),
        ],
    )
    args = ["--bootstrap-servers", bootstrap, "--partitions", "3"]
    path = "/kafkalog/default"
    broker = BrokerProcess(manifests, tmp_path, log="kafka", args=args).start()
    try:
        for n in range(6):
            broker.publish(f"k-{n}", partitionkey=f"key-{n % 2}", path=path)
        received = subscriber.wait_for("/kafka", 6)
        broker.wait_idle()
    finally:
        assert broker.stop() == 0
    for r in received:
        assert r.ce["knativekafkapartition"] == str(partition_for_key(r.ce["partitionkey"], 3))
    per_key = {
        key: [r.ce["id"] for r in received if r.ce["partitionkey"] == key]
        for key in ("key-0", "key-1")
    }
    assert per_key == {"key-0": ["k-0", "k-2", "k-4"], "key-1": ["k-1", "k-3", "k-5"]}

    again = BrokerProcess(manifests, tmp_path, log="kafka", args=args, port=broker.port).start()
    try:
        again.publish("k-after", path=path)
        wait_for_event(subscriber, "/kafka", "k-after")
        again.wait_idle()
    finally:
        assert again.stop() == 0
    # The offsets committed in Kafka survived the restart: nothing was delivered twice.
    assert len(subscriber.received("/kafka")) == 7

"""The same broker on the server-backed logs, Kafka (Tansu) and NATS JetStream: delivery,
partitions, and committed offsets kept in the server across a broker restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cascade.broker.log.partitioner import partition_for_key
from tests.conformance.harness import (
    BrokerProcess,
    Subscriber,
    broker_manifest,
    trigger_manifest,
    wait_for_event,
    write_manifests,
)
from tests.log_servers import SERVER_LOGS, log_server


@pytest.fixture(scope="module", params=SERVER_LOGS)
def server_log(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str]]]:
    """The log kind and the `cascade broker` arguments reaching its fresh server."""
    with log_server(request.param) as args:
        yield request.param, args


def test_delivery_and_committed_offsets_on_a_server_log(
    tmp_path: Path, subscriber: Subscriber, server_log: tuple[str, list[str]]
) -> None:
    kind, log_args = server_log
    namespace = f"{kind}log"
    route = f"/{kind}"
    manifests = write_manifests(
        tmp_path / "m.yaml",
        [
            broker_manifest(namespace=namespace),
            trigger_manifest("ordered", subscriber.url(route), namespace=namespace, ordered=True),
        ],
    )
    # BrokerProcess passes --log itself.
    args = [*log_args[2:], "--partitions", "3"]
    path = f"/{namespace}/default"
    broker = BrokerProcess(manifests, tmp_path, log=kind, args=args).start()
    try:
        for n in range(6):
            broker.publish(f"k-{n}", partitionkey=f"key-{n % 2}", path=path)
        received = subscriber.wait_for(route, 6)
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

    again = BrokerProcess(manifests, tmp_path, log=kind, args=args, port=broker.port).start()
    try:
        again.publish("k-after", path=path)
        wait_for_event(subscriber, route, "k-after")
        again.wait_idle()
    finally:
        assert again.stop() == 0
    # The offsets committed in the server survived the restart: nothing was delivered twice.
    assert len(subscriber.received(route)) == 7

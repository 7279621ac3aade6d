"""The ingress keeps answering while every log read hangs.

On a Kafka log a read is librdkafka waiting on the cluster; when Kafka is slow or gone, reads
can hold every log thread for their whole timeout. The unfinished ``make chaos LOG=kafka`` run
(2026-12-04) crawled that way after a broker restart: its stores queued behind the reads and
the order API's relay timed out. Here a log whose reads block stands in for that.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from cascade.broker.event import Record, StoredEvent
from cascade.broker.log.memory import MemoryLog
from cascade.broker.server import BrokerServer
from cascade.broker.settings import BrokerSettings
from cascade.broker.topology import load_topology

PARTITIONS = 10
TRIGGERS = 12  # more readers than the broker has log threads


class StuckReadsLog(MemoryLog):
    """Reads block once ``stuck`` is set, until ``release`` is; everything else works."""

    def __init__(self, partitions: int) -> None:
        super().__init__(partitions)
        self.stuck = threading.Event()
        self.release = threading.Event()
        self.blocked_reads = 0
        self._count_lock = threading.Lock()

    def read(self, partition: int, offset: int, max_records: int) -> Sequence[Record]:
        if self.stuck.is_set():
            with self._count_lock:
                self.blocked_reads += 1
            self.release.wait(60)
        return super().read(partition, offset, max_records)


def _manifests(path: Path) -> Path:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "shop", "namespace": "default"},
        }
    ]
    for n in range(TRIGGERS):
        docs.append(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Trigger",
                "metadata": {
                    "name": f"t{n}",
                    "namespace": "default",
                    "annotations": {"kafka.eventing.knative.dev/delivery.order": "ordered"},
                },
                "spec": {
                    "broker": "shop",
                    # Matches nothing: the records are read, never delivered.
                    "filter": {"attributes": {"type": "no.such.type"}},
                    "subscriber": {"uri": "http://127.0.0.1:9/"},
                },
            }
        )
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _event(n: int) -> StoredEvent:
    attributes = {
        "specversion": "1.0",
        "id": f"other-{n}",
        "source": "/another-writer",
        "type": "t",
        "partitionkey": f"key-{n}",
    }
    return StoredEvent(attributes, b"{}")


def test_the_ingress_stores_while_every_log_read_hangs(tmp_path: Path) -> None:
    log = StuckReadsLog(PARTITIONS)
    topology = load_topology([_manifests(tmp_path / "m.yaml")])
    settings = BrokerSettings(
        port=0, log_kind="memory", data_dir=tmp_path, partitions=PARTITIONS, drain_seconds=0.5
    )
    server = BrokerServer(topology, settings)
    server._open_log = lambda namespace, name: log  # type: ignore[method-assign,assignment,return-value]

    async def scenario() -> None:
        await server.start()
        try:
            log.stuck.set()
            # Records of another writer (not in the broker's tail) in every partition: the
            # next poll sends every Trigger's readers to the log, where the reads hang.
            log.append_many([(_event(n), None) for n in range(200)])
            async with asyncio.timeout(30):
                while log.blocked_reads < 8:
                    await asyncio.sleep(0.05)
            url = f"http://127.0.0.1:{server.port}/default/shop"
            headers = {
                "ce-specversion": "1.0",
                "ce-id": "through-the-ingress",
                "ce-source": "/test",
                "ce-type": "t",
                "content-type": "application/json",
            }
            async with aiohttp.ClientSession() as session:
                # Before the ingress had threads of its own this waited for the stuck reads.
                async with asyncio.timeout(15):
                    async with session.post(url, data=b"{}", headers=headers) as answer:
                        assert answer.status == 202
                async with session.get(f"http://127.0.0.1:{server.port}/-/health") as answer:
                    assert answer.status == 200
                # The lag view asks the end offsets on a thread of their own, once for all.
                async with asyncio.timeout(15):
                    admin = f"http://127.0.0.1:{server.port}/-/triggers"
                    async with session.get(admin) as answer:
                        assert answer.status == 200
                        views = await answer.json()
                assert len(views) == TRIGGERS
                assert all(view["lag"] == 201 for view in views)  # 200 + the one above
            stored = [
                record
                for partition in range(PARTITIONS)
                for record in MemoryLog.read(log, partition, 0, 1000)
                if record.event.attributes["id"] == "through-the-ingress"
            ]
            assert len(stored) == 1
        finally:
            log.release.set()
            await server.stop()

    asyncio.run(scenario())

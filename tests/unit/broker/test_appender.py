"""Group commit: concurrent appends share append_many calls and each waits for durability."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from cascade.broker.event import StoredEvent
from cascade.broker.ingress.appender import Appender
from cascade.broker.log.base import LogError
from cascade.broker.log.memory import MemoryLog


def event(n: int, key: str | None = None) -> StoredEvent:
    attributes = {"specversion": "1.0", "id": str(n), "source": "/s", "type": "t"}
    if key:
        attributes["partitionkey"] = key
    return StoredEvent(attributes, b"")


class SlowCountingLog(MemoryLog):
    """Counts append_many calls and holds each one until released."""

    def __init__(self, partitions: int) -> None:
        super().__init__(partitions)
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.fail_ids: set[str] = set()

    def append_many(
        self, items: Sequence[tuple[StoredEvent, Mapping[str, str] | None]]
    ) -> list[tuple[int, int]]:
        self.gate.wait(10)
        self.calls.append(len(items))
        if any(e.attributes["id"] in self.fail_ids for e, _ in items):
            raise LogError("disk full")
        return super().append_many(items)


def test_appends_arriving_during_a_write_go_together() -> None:
    async def scenario() -> None:
        log = SlowCountingLog(3)
        stored: list[tuple[int, int]] = []
        with ThreadPoolExecutor(2) as pool:
            appender = Appender(
                log, pool, lambda records: stored.extend((r.partition, r.offset) for r in records)
            )
            first = asyncio.ensure_future(appender.append(event(0)))
            await asyncio.sleep(0.05)  # the first write is now blocked in the log
            rest = [asyncio.ensure_future(appender.append(event(n))) for n in range(1, 21)]
            await asyncio.sleep(0.05)
            log.gate.set()
            positions = await asyncio.gather(first, *rest)
            await appender.drain()
        assert log.calls == [1, 20]
        assert sorted(positions) == sorted(stored)
        assert len(set(positions)) == 21
        log.close()

    asyncio.run(scenario())


def test_one_failing_event_does_not_fail_its_batch_neighbours() -> None:
    async def scenario() -> None:
        log = SlowCountingLog(1)
        log.fail_ids = {"3"}
        with ThreadPoolExecutor(2) as pool:
            appender = Appender(log, pool, lambda positions: None)
            first = asyncio.ensure_future(appender.append(event(0)))
            await asyncio.sleep(0.05)
            rest = [asyncio.ensure_future(appender.append(event(n))) for n in range(1, 6)]
            await asyncio.sleep(0.05)
            log.gate.set()
            results = await asyncio.gather(first, *rest, return_exceptions=True)
        failures = [r for r in results if isinstance(r, Exception)]
        assert len(failures) == 1
        assert isinstance(failures[0], LogError)
        assert isinstance(results[3], LogError)
        assert [r.event.attributes["id"] for r in log.read(0, 0, 10)] == ["0", "1", "2", "4", "5"]
        log.close()

    asyncio.run(scenario())


def test_a_closed_log_fails_the_append_with_log_error() -> None:
    async def scenario() -> None:
        log = MemoryLog(1)
        log.close()
        with ThreadPoolExecutor(1) as pool:
            appender = Appender(log, pool, lambda positions: None)
            with pytest.raises(LogError, match="closed"):
                await appender.append(event(1))

    asyncio.run(scenario())

"""The log's end offsets, asked once for all Triggers (SharedEndOffsets)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cascade.broker.dispatch.dispatcher import TriggerDispatcher
from cascade.broker.dispatch.end_offsets import SharedEndOffsets
from cascade.broker.event import Record, StoredEvent
from cascade.broker.log.memory import MemoryLog
from cascade.broker.log.tail import TailCache


class CountingLog(MemoryLog):
    """Counts the questions that would be network round trips on Kafka."""

    def __init__(self, partitions: int) -> None:
        super().__init__(partitions)
        self.end_offset_calls = 0
        self.reads = 0
        self.gate = threading.Event()
        self.gate.set()
        self._count_lock = threading.Lock()

    def end_offset(self, partition: int) -> int:
        with self._count_lock:
            self.end_offset_calls += 1
        self.gate.wait(10)
        return super().end_offset(partition)

    def read(self, partition: int, offset: int, max_records: int) -> list[Record]:
        with self._count_lock:
            self.reads += 1
        return list(super().read(partition, offset, max_records))


def event(n: int) -> StoredEvent:
    return StoredEvent({"specversion": "1.0", "id": str(n), "source": "/s", "type": "t"}, b"")


def test_concurrent_questions_are_one_question() -> None:
    async def scenario() -> None:
        log = CountingLog(3)
        log.append_many([(event(n), None) for n in range(4)])
        with ThreadPoolExecutor(4) as pool:
            ends = SharedEndOffsets(log, pool)
            log.gate.clear()  # hold the first question until every caller has joined it
            waiting = [asyncio.ensure_future(ends.get(max_age=0)) for _ in range(20)]
            await asyncio.sleep(0.1)
            log.gate.set()
            answers = await asyncio.gather(*waiting)
        assert all(answer == answers[0] for answer in answers)
        assert sum(answers[0]) == 4
        assert log.end_offset_calls == 3  # one question: one call per partition

    asyncio.run(scenario())


def test_a_fresh_answer_is_reused_and_a_stale_one_asked_again() -> None:
    async def scenario() -> None:
        log = CountingLog(2)
        with ThreadPoolExecutor(2) as pool:
            ends = SharedEndOffsets(log, pool)
            assert await ends.get(max_age=60) == [0, 0]
            assert await ends.get(max_age=60) == [0, 0]
            assert log.end_offset_calls == 2
            log.append_many([(event(1), None)])  # another writer: unseen until asked again
            assert sum(await ends.get(max_age=60)) == 0
            assert sum(await ends.get(max_age=0)) == 1
            assert log.end_offset_calls == 4

    asyncio.run(scenario())


def test_records_stored_here_move_the_ends_at_once() -> None:
    async def scenario() -> None:
        log = CountingLog(2)
        with ThreadPoolExecutor(2) as pool:
            ends = SharedEndOffsets(log, pool)
            ends.note([Record(1, 5, event(1), {})])  # before any answer: nothing to move
            assert await ends.get(max_age=60) == [0, 0]
            ends.note([Record(1, 5, event(1), {}), Record(0, 0, event(2), {})])
            assert await ends.get(max_age=60) == [1, 6]
            ends.note([Record(1, 2, event(3), {})])  # older than the end: ends never go back
            assert await ends.get(max_age=60) == [1, 6]

    asyncio.run(scenario())


def test_a_failed_question_fails_its_callers_and_the_next_asks_again() -> None:
    class Failing(CountingLog):
        fail = True

        def end_offset(self, partition: int) -> int:
            if self.fail:
                raise OSError("cluster unreachable")
            return super().end_offset(partition)

    async def scenario() -> None:
        log = Failing(2)
        with ThreadPoolExecutor(2) as pool:
            ends = SharedEndOffsets(log, pool)
            with pytest.raises(OSError, match="unreachable"):
                await ends.get(max_age=60)
            log.fail = False
            assert await ends.get(max_age=60) == [0, 0]

    asyncio.run(scenario())


def test_idle_polls_of_many_triggers_cost_no_log_reads() -> None:
    """Twelve Triggers polling a log with nothing new: a few end-offset questions, no reads
    (each read on Kafka is a watermark round trip and a fetch)."""

    async def scenario() -> None:
        log = CountingLog(10)
        log.append_many([(event(n), None) for n in range(30)])
        with ThreadPoolExecutor(8) as pool:
            tail = TailCache(log.partitions)
            ends = SharedEndOffsets(log, pool)

            async def process(record: Record) -> None:
                pass

            dispatchers = [
                TriggerDispatcher(
                    name=f"ns/t{n}",
                    group=f"g{n}",
                    log=log,
                    executor=pool,
                    process=process,
                    ordered=True,
                    commit_interval=0.05,
                    poll_interval=0.05,
                    tail=tail,
                    ends=ends,
                )
                for n in range(12)
            ]
            for dispatcher in dispatchers:
                await dispatcher.start()  # new Triggers start at the end: nothing to read
            log.reads = 0
            await asyncio.sleep(1.0)  # ~20 polls of 120 partition readers
            idle_reads = log.reads
            # Another writer's record is still found by the next poll: every Trigger reads
            # the new record's partition (a timeout here fails the test).
            log.append_many([(event(99), None)])
            async with asyncio.timeout(10):
                while log.reads < 12:
                    await asyncio.sleep(0.02)
            for dispatcher in dispatchers:
                await dispatcher.stop(1.0)
        assert idle_reads == 0

    asyncio.run(scenario())

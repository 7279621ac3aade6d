"""A Trigger's consumer: start offset, ordered vs unordered scheduling, gap-free commits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from cascade.broker.dispatch.dispatcher import TriggerDispatcher
from cascade.broker.event import Record, StoredEvent
from cascade.broker.log.memory import MemoryLog
from cascade.broker.log.tail import TailCache

GROUP = "knative-trigger-ns-t"


def event(n: int, key: str | None = None) -> StoredEvent:
    attributes = {"specversion": "1.0", "id": str(n), "source": "/s", "type": "t"}
    if key is not None:
        attributes["partitionkey"] = key
    return StoredEvent(attributes, b"")


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def dispatcher(
    log: MemoryLog,
    pool: ThreadPoolExecutor,
    process: Callable[[Record], Awaitable[None]],
    *,
    ordered: bool,
    max_inflight: int = 50,
    poll_interval: float = 0.05,
    tail: TailCache | None = None,
) -> TriggerDispatcher:
    return TriggerDispatcher(
        name="ns/t",
        group=GROUP,
        log=log,
        executor=pool,
        process=process,
        ordered=ordered,
        max_inflight=max_inflight,
        commit_interval=0.02,
        poll_interval=poll_interval,
        tail=tail,
    )


def test_a_new_trigger_starts_at_the_end_and_commits_that_start() -> None:
    async def scenario() -> None:
        log = MemoryLog(2)
        log.append_many([(event(n), None) for n in range(5)])
        seen: list[str] = []

        async def process(record: Record) -> None:
            seen.append(record.event.attributes["id"])

        with ThreadPoolExecutor(2) as pool:
            d = dispatcher(log, pool, process, ordered=True)
            await d.start()
            assert [log.committed(GROUP, p) for p in range(2)] == [3, 2]
            log.append_many([(event(n), None) for n in range(5, 8)])
            for p in range(2):
                d.notify(p)
            await until(lambda: len(seen) == 3)
            await d.stop(1.0)
        assert sorted(seen) == ["5", "6", "7"]
        assert [log.committed(GROUP, p) for p in range(2)] == [log.end_offset(p) for p in range(2)]

    asyncio.run(scenario())


def test_ordered_is_one_at_a_time_per_partition_and_parallel_across() -> None:
    async def scenario() -> None:
        log = MemoryLog(4)
        running: dict[int, int] = {}
        most_per_partition = 0
        most_overall = 0
        seen: dict[int, list[int]] = {}

        async def process(record: Record) -> None:
            nonlocal most_per_partition, most_overall
            running[record.partition] = running.get(record.partition, 0) + 1
            most_per_partition = max(most_per_partition, running[record.partition])
            most_overall = max(most_overall, sum(running.values()))
            await asyncio.sleep(0.005)
            seen.setdefault(record.partition, []).append(record.offset)
            running[record.partition] -= 1

        with ThreadPoolExecutor(2) as pool:
            d = dispatcher(log, pool, process, ordered=True)
            await d.start()
            log.append_many([(event(n, key=f"k{n % 8}"), None) for n in range(80)])
            for p in range(4):
                d.notify(p)
            await until(lambda: sum(len(v) for v in seen.values()) == 80)
            await d.stop(1.0)
        assert most_per_partition == 1
        assert most_overall > 1
        for offsets in seen.values():
            assert offsets == sorted(offsets)

    asyncio.run(scenario())


def test_unordered_runs_up_to_max_inflight_at_once() -> None:
    async def scenario() -> None:
        log = MemoryLog(1)
        running = 0
        most = 0
        done = 0

        async def process(record: Record) -> None:
            nonlocal running, most, done
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.02)
            running -= 1
            done += 1

        with ThreadPoolExecutor(2) as pool:
            d = dispatcher(log, pool, process, ordered=False, max_inflight=5)
            await d.start()
            log.append_many([(event(n), None) for n in range(30)])
            d.notify(0)
            await until(lambda: done == 30)
            await d.stop(1.0)
        assert most == 5
        assert log.committed(GROUP, 0) == 30

    asyncio.run(scenario())


def test_commit_waits_for_the_gap_to_close() -> None:
    async def scenario() -> None:
        log = MemoryLog(1)
        release = asyncio.Event()
        finished: list[int] = []

        async def process(record: Record) -> None:
            if record.offset == 0:
                await release.wait()
            finished.append(record.offset)

        with ThreadPoolExecutor(2) as pool:
            d = dispatcher(log, pool, process, ordered=False)
            await d.start()
            log.append_many([(event(n), None) for n in range(10)])
            d.notify(0)
            await until(lambda: len(finished) == 9)
            await d.commit()
            assert log.committed(GROUP, 0) == 0  # offset 0 is still in flight
            release.set()
            await until(lambda: len(finished) == 10)
            await until(lambda: log.committed(GROUP, 0) == 10)
            await d.stop(1.0)

    asyncio.run(scenario())


def test_stop_abandons_unfinished_records_uncommitted_and_a_restart_redelivers_them() -> None:
    async def scenario() -> None:
        log = MemoryLog(1)
        first_run: list[int] = []

        async def stuck_on_two(record: Record) -> None:
            if record.offset == 2:
                await asyncio.sleep(3600)
            first_run.append(record.offset)

        with ThreadPoolExecutor(2) as pool:
            d = dispatcher(log, pool, stuck_on_two, ordered=True)
            await d.start()
            log.append_many([(event(n), None) for n in range(5)])
            d.notify(0)
            await until(lambda: first_run == [0, 1])
            await d.stop(0.05)
            assert log.committed(GROUP, 0) == 2

            second_run: list[int] = []

            async def process(record: Record) -> None:
                second_run.append(record.offset)

            again = dispatcher(log, pool, process, ordered=True)
            await again.start()
            await until(lambda: second_run == [2, 3, 4])
            await again.stop(1.0)

    asyncio.run(scenario())


def test_an_unexpected_error_does_not_wedge_the_partition(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        log = MemoryLog(1)
        seen: list[int] = []

        async def process(record: Record) -> None:
            if record.offset == 0:
                raise RuntimeError("bug")
            seen.append(record.offset)

        with ThreadPoolExecutor(2) as pool:
            d = dispatcher(log, pool, process, ordered=True)
            await d.start()
            log.append_many([(event(n), None) for n in range(3)])
            d.notify(0)
            await until(lambda: seen == [1, 2])
            await d.stop(1.0)

    asyncio.run(scenario())
    assert "unexpected error on partition 0 offset 0" in caplog.text


def test_partition_states_report_lag() -> None:
    async def scenario() -> None:
        log = MemoryLog(2)

        async def never(record: Record) -> None:
            await asyncio.sleep(3600)

        with ThreadPoolExecutor(2) as pool:
            d = dispatcher(log, pool, never, ordered=True)
            await d.start()
            log.append_many([(event(n, key="a"), None) for n in range(4)])
            states = await d.partition_states()
            await d.stop(0.01)
        assert sum(state.lag for state in states) == 4
        assert all(state.committed == 0 for state in states)

    asyncio.run(scenario())


class CountingLog(MemoryLog):
    """A memory log that counts the reads the dispatcher makes."""

    reads = 0

    def read(self, partition: int, offset: int, max_records: int) -> list[Record]:
        self.reads += 1
        return list(super().read(partition, offset, max_records))


@pytest.mark.parametrize("ordered", [True, False])
def test_a_caught_up_reader_waits_for_the_tail_yet_still_sees_other_writers(ordered: bool) -> None:
    async def scenario() -> None:
        log = CountingLog(1)
        tail = TailCache(1)
        seen: list[str] = []

        async def process(record: Record) -> None:
            seen.append(record.event.attributes["id"])

        with ThreadPoolExecutor(2) as pool:
            d = dispatcher(log, pool, process, ordered=ordered, poll_interval=0.2, tail=tail)
            await d.start()
            # This process stores 20 events one by one, as the appender does.
            for n in range(20):
                stored = log.append_many([(event(n), None)])
                tail.add([Record(0, offset, event(n)) for _, offset in stored])
                d.notify(0)
                await until(lambda n=n: len(seen) == n + 1)
            reads_while_notified = log.reads
            # Another writer: no tail entry, no notification; found by the next poll.
            log.append_many([(event(99), None)])
            await until(lambda: "99" in seen)
            await d.stop(1.0)
        assert seen == [str(n) for n in range(20)] + ["99"]
        # Only the first read (cache still empty) and the occasional poll touch the log.
        assert reads_while_notified <= 5
        assert log.reads > reads_while_notified

    asyncio.run(scenario())

"""One Trigger's consumer: reads its Broker's log partitions and feeds records to its egress.

- Cursor per partition in the Trigger's consumer group; a Trigger seen for the first time starts
  at the END of the log, and that start is committed at once so a restart keeps it (§6.2).
- ``ordered``: one record at a time per partition (retries, reply and DLS included), partitions
  in parallel, one reader task each. ``unordered``: up to ``max_inflight`` records at once for
  the whole Trigger (§6.3), started by one reader task that visits the partitions with news.
- Committed offsets only ever cover a gap-free run of finished records (offsets.py), committed
  every ``commit_interval`` seconds and on stop, so a crash redelivers and never skips (§6.5).
- New records are announced by ``notify`` (the appender, once stored); a reader that has read
  all the in-memory tail holds waits for that, and every ``poll_interval`` each reader also
  asks the log, which is how records of other writers are found. With ``ends`` (the log's
  end offsets, asked once for all its Triggers) a reader asks only when there is something to
  read: a poll costs no log round trip per partition and Trigger (end_offsets.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

from cascade.broker.dispatch.end_offsets import SharedEndOffsets
from cascade.broker.dispatch.offsets import PartitionOffsets
from cascade.broker.event import Record
from cascade.broker.log.base import BrokerLog
from cascade.broker.log.tail import TailCache

__all__ = ["PartitionState", "RecordProcessor", "TriggerDispatcher"]

logger = logging.getLogger(__name__)

RecordProcessor = Callable[[Record], Awaitable[None]]
_T = TypeVar("_T")


@dataclass(frozen=True)
class PartitionState:
    partition: int
    end_offset: int
    committed: int

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.committed)


class TriggerDispatcher:
    def __init__(
        self,
        *,
        name: str,
        group: str,
        log: BrokerLog,
        executor: Executor,
        process: RecordProcessor,
        ordered: bool,
        max_inflight: int = 50,
        read_batch: int = 100,
        commit_interval: float = 0.2,
        poll_interval: float = 1.0,
        tail: TailCache | None = None,
        ends: SharedEndOffsets | None = None,
    ) -> None:
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
        self.name = name
        self.group = group
        self.ordered = ordered
        self._log = log
        self._executor = executor
        self._process = process
        self._max_inflight = max_inflight
        self._read_batch = read_batch
        self._commit_interval = commit_interval
        self._poll_interval = poll_interval
        self._tail = tail
        self._ends = ends
        self._offsets: dict[int, PartitionOffsets] = {}
        # Ordered: one reader task per partition, each with its wake-up event. Unordered: one
        # reader for all partitions, woken once however many partitions got news.
        self._wakeups = [asyncio.Event() for _ in range(log.partitions)]
        self._news: set[int] = set()
        self._any_news = asyncio.Event()
        # Set every poll interval: the reader then asks the log, whatever the tail says.
        self._poll_due = [False] * log.partitions
        self._slots = asyncio.Semaphore(max_inflight)
        self._readers: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._committer: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Find (or set) the starting offsets, then start reading and committing."""
        starts = await self._run(self._initial_offsets)
        self._offsets = {partition: PartitionOffsets(start) for partition, start in starts.items()}
        for offsets in self._offsets.values():
            offsets.mark_committed(offsets.committable)
        loop = asyncio.get_running_loop()
        if self.ordered:
            self._readers = [
                loop.create_task(self._read_ordered(partition), name=f"{self.name}[{partition}]")
                for partition in self._offsets
            ]
        else:
            self._news.update(self._offsets)  # look at every partition once
            self._readers = [loop.create_task(self._read_unordered(), name=self.name)]
        self._committer = loop.create_task(self._commit_periodically())
        self._poller = loop.create_task(self._poll_periodically())

    def notify(self, partition: int) -> None:
        """New records were stored in ``partition``."""
        if self.ordered:
            self._wakeups[partition].set()
        else:
            self._news.add(partition)
            self._any_news.set()

    async def stop(self, grace: float) -> None:
        """Stop reading; give in-flight records ``grace`` seconds, abandon the rest uncommitted."""
        self._stopping = True
        for wakeup in (*self._wakeups, self._any_news):
            wakeup.set()
        # In ordered mode the readers themselves carry the in-flight record.
        running = {task for task in (*self._readers, *self._inflight) if not task.done()}
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                logger.warning(
                    "trigger %s: %d delivery task(s) abandoned at shutdown; their events will "
                    "be delivered again after a restart",
                    self.name,
                    len(late),
                )
                await asyncio.gather(*late, return_exceptions=True)
        for background in (self._poller, self._committer):
            if background is not None:
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
        await self.commit()

    async def commit(self) -> None:
        """Commit every partition whose gap-free finished run has grown."""
        pending = {
            partition: offsets.committable
            for partition, offsets in self._offsets.items()
            if offsets.needs_commit()
        }
        if not pending:
            return
        await self._run(self._log.commit, self.group, pending)
        for partition, offset in pending.items():
            self._offsets[partition].mark_committed(offset)

    async def partition_states(self) -> list[PartitionState]:
        if self._ends is not None:
            # A quarter second old at most: one question answers every Trigger's view.
            shared = await self._ends.get(max_age=0.25)
            ends = {partition: shared[partition] for partition in self._offsets}
        else:
            ends = await self._run(self._end_offsets)
        return [
            PartitionState(partition, ends[partition], offsets.committed)
            for partition, offsets in sorted(self._offsets.items())
        ]

    # -- internals ---------------------------------------------------------------------------

    def _initial_offsets(self) -> dict[int, int]:
        starts: dict[int, int] = {}
        fresh: dict[int, int] = {}
        for partition in range(self._log.partitions):
            committed = self._log.committed(self.group, partition)
            if committed is None:
                committed = fresh[partition] = self._log.end_offset(partition)
            starts[partition] = committed
        if fresh:
            self._log.commit(self.group, fresh)
        return starts

    def _end_offsets(self) -> dict[int, int]:
        return {partition: self._log.end_offset(partition) for partition in self._offsets}

    async def _run(self, function: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def _next_records(self, partition: int) -> Sequence[Record]:
        """The records from the partition's read position on: from the tail when it holds
        them, else from the log; empty when there is nothing new (or the read failed)."""
        offsets = self._offsets[partition]
        poll_due, self._poll_due[partition] = self._poll_due[partition], False
        tail = self._tail
        if tail is not None:
            records = tail.read(partition, offsets.next_offset, self._read_batch)
            if records is not None:
                return records
            if not poll_due and tail.caught_up(partition, offsets.next_offset):
                # Everything this process stored here is read: a log read would find nothing
                # and cost a thread hop. Records of other writers are picked up at the next poll.
                return ()
        try:
            if self._ends is not None:
                ends = await self._ends.get(max_age=self._poll_interval / 2)
                if offsets.next_offset >= ends[partition]:
                    return ()  # nothing new: no read (a round trip on Kafka) needed
            return await self._run(self._log.read, partition, offsets.next_offset, self._read_batch)
        except Exception as exc:
            logger.error("trigger %s: reading partition %d failed: %s", self.name, partition, exc)
            return ()

    async def _read_ordered(self, partition: int) -> None:
        offsets = self._offsets[partition]
        wakeup = self._wakeups[partition]
        while not self._stopping:
            wakeup.clear()
            records = await self._next_records(partition)
            if not records:
                # Woken by new records (notify), the poll tick or stop; no timer per wait.
                await wakeup.wait()
                continue
            for record in records:
                if self._stopping:
                    return
                if record.offset < offsets.next_offset:
                    continue
                offsets.start(record.offset)
                await self._process_safely(record)
                offsets.finish(record.offset)

    async def _read_unordered(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._any_news.clear()
            news, self._news = self._news, set()
            if not news:
                await self._any_news.wait()
                continue
            for partition in sorted(news):
                records = await self._next_records(partition)
                if not records:
                    continue
                self._news.add(partition)  # more may follow what this read returned
                offsets = self._offsets[partition]
                for record in records:
                    if self._stopping:
                        return
                    if record.offset < offsets.next_offset:
                        continue
                    await self._slots.acquire()
                    if self._stopping:
                        self._slots.release()
                        return
                    offsets.start(record.offset)
                    task = loop.create_task(self._process_unordered(record, offsets))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)

    async def _process_unordered(self, record: Record, offsets: PartitionOffsets) -> None:
        try:
            await self._process_safely(record)
            offsets.finish(record.offset)
        finally:
            self._slots.release()

    async def _process_safely(self, record: Record) -> None:
        try:
            await self._process(record)
        except Exception:
            # A bug must not wedge the partition: say so loudly and move on.
            logger.exception(
                "trigger %s: unexpected error on partition %d offset %d; event dropped",
                self.name,
                record.partition,
                record.offset,
            )

    async def _poll_periodically(self) -> None:
        """Every poll interval, have each reader look at the log (records of other writers)."""
        while True:
            await asyncio.sleep(self._poll_interval)
            for partition in self._offsets:
                self._poll_due[partition] = True
                self.notify(partition)

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval)
            try:
                await self.commit()
            except Exception as exc:
                logger.error("trigger %s: committing offsets failed: %s", self.name, exc)

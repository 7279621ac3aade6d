"""Group commit: events that arrive while a write is under way are stored together.

Each ``append`` waits until its event is durable. One writer task per log takes everything
queued, stores it with ``BrokerLog.append_many`` in a worker thread, then wakes the callers and
hands the stored records, in order, to ``on_stored`` (tail cache, dispatcher wake-ups). Under load
this turns many small durable writes into few large ones; alone, an event costs one write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor

from cascade.broker.event import Record, StoredEvent
from cascade.broker.log.base import BrokerLog, LogError

__all__ = ["Appender"]

logger = logging.getLogger(__name__)

_Pending = tuple[StoredEvent, Mapping[str, str] | None, "asyncio.Future[tuple[int, int]]"]


class Appender:
    def __init__(
        self,
        log: BrokerLog,
        executor: Executor,
        on_stored: Callable[[Sequence[Record]], None],
        *,
        max_batch: int = 512,
    ) -> None:
        self._log = log
        self._executor = executor
        self._on_stored = on_stored
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(
        self, event: StoredEvent, headers: Mapping[str, str] | None = None
    ) -> tuple[int, int]:
        """Store ``event`` durably; return ``(partition, offset)``; raise LogError on failure."""
        return await self.submit(event, headers)

    def submit(
        self, event: StoredEvent, headers: Mapping[str, str] | None = None
    ) -> asyncio.Future[tuple[int, int]]:
        """Queue ``event``; the future is done once it is durable (or failed with LogError).

        For callers that wait by callback rather than in a task (the ingress fast path)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, int]] = loop.create_future()
        self._queue.append((event, headers, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write())
        return future

    async def drain(self) -> None:
        """Wait until everything queued so far is stored (or failed)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                items = [(event, headers) for event, headers, _ in batch]
                try:
                    positions = await loop.run_in_executor(self._executor, self._store, items)
                except Exception as exc:
                    if len(batch) == 1:
                        self._fail(batch, exc)
                        continue
                    # One bad event must not fail its neighbours: store them one by one.
                    for pending in batch:
                        try:
                            position = await loop.run_in_executor(
                                self._executor, self._store, [pending[:2]]
                            )
                        except Exception as single_exc:
                            self._fail([pending], single_exc)
                        else:
                            self._succeed([pending], position)
                    continue
                self._succeed(batch, positions)
        finally:
            self._writer = None

    def _succeed(self, batch: Sequence[_Pending], positions: Sequence[tuple[int, int]]) -> None:
        records = []
        for (event, headers, future), (partition, offset) in zip(batch, positions, strict=True):
            if not future.done():
                future.set_result((partition, offset))
            records.append(Record(partition, offset, event, headers or {}))
        self._on_stored(records)

    @staticmethod
    def _fail(batch: Sequence[_Pending], exc: Exception) -> None:
        logger.error("storing %d event(s) failed: %s", len(batch), exc)
        error = exc if isinstance(exc, LogError) else LogError(str(exc))
        for _, _, future in batch:
            if not future.done():
                future.set_exception(error)

    def _store(
        self, items: Sequence[tuple[StoredEvent, Mapping[str, str] | None]]
    ) -> list[tuple[int, int]]:
        positions = self._log.append_many(items)
        if len(positions) != len(items):
            raise LogError(f"the log stored {len(positions)} of {len(items)} events")
        return positions

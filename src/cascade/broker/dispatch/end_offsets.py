"""The end offsets of one log, asked once for all the Triggers that read it.

Every Trigger of a Broker reads the same log. Left to themselves, twelve Triggers polling ten
partitions once a second, and every ``/-/triggers`` or ``/metrics`` request, each ask the log
for every partition's end: on a Kafka log that is a network round trip apiece, through the
broker's few log threads, and under load those questions alone kept the threads busy while the
backlog after a restart waited behind them (the unfinished ``make chaos LOG=kafka`` run of
2026-12-04). Here one question serves everyone: an answer younger than ``max_age`` is reused,
a question in flight is joined, and records this broker stores move the ends forward at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor

from cascade.broker.event import Record
from cascade.broker.log.base import BrokerLog

__all__ = ["SharedEndOffsets"]


class SharedEndOffsets:
    """Only the broker's event loop uses it."""

    def __init__(self, log: BrokerLog, executor: Executor) -> None:
        self._log = log
        self._executor = executor
        self._ends: list[int] | None = None
        self._asked_at = 0.0  # monotonic time the cached answer's question was asked
        self._inflight: asyncio.Future[list[int]] | None = None

    async def get(self, max_age: float) -> list[int]:
        """Every partition's end offset, as the log said at most ``max_age`` seconds ago
        (or later: records stored here since count at once)."""
        if self._ends is not None and time.monotonic() - self._asked_at <= max_age:
            return list(self._ends)
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._ask())
        # Shielded: one caller cancelled (a client hanging up) must not cancel the others'.
        return list(await asyncio.shield(self._inflight))

    def note(self, records: Sequence[Record]) -> None:
        """Records this broker just stored: the ends are at least past them."""
        if self._ends is None:
            return
        for record in records:
            if record.offset >= self._ends[record.partition]:
                self._ends[record.partition] = record.offset + 1

    async def _ask(self) -> list[int]:
        asked_at = time.monotonic()
        try:
            ends = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._log.end_offsets
            )
        finally:
            self._inflight = None
        if self._ends is not None:
            # Records noted while the question was out may be newer than its answer.
            ends = [max(new, old) for new, old in zip(ends, self._ends, strict=True)]
        self._ends, self._asked_at = ends, asked_at
        return ends

"""Retention of a broker log: drop old records by age and by size, never unfinished ones.

Like Kafka's topic retention (``retention.ms``, ``retention.bytes``) with a safety floor Kafka
does not have: a record is only dropped once every consumer group of the Broker's Triggers has
committed past it. A Trigger's offset only moves past a record once the record is finished:
delivered (its reply stored), or taken by the dead-letter sink, or dropped after its retries
the Knative way (logged); so neither a lagging Trigger nor a delivery still on its way to the
dead-letter sink ever loses a record to retention. The dead-letter sink keeps its own copy of
what it took (replays come from there, not from the log). The newest record of each partition
is always kept: it carries the partition's end offset across restarts.

The sqlite log applies it (the broker runs a pass every ``interval`` seconds); Kafka and NATS
logs leave retention to their server's own topic or stream settings; the memory log holds
nothing past the broker's life.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from cascade.broker.log.base import BrokerLog, LogError

__all__ = [
    "DEFAULT_RETENTION_BYTES",
    "DEFAULT_RETENTION_SECONDS",
    "Pruned",
    "RetentionPolicy",
    "Retentive",
    "keep_retention",
    "start_retention",
    "parse_duration",
    "parse_size",
]

logger = logging.getLogger("cascade.broker.retention")

DEFAULT_RETENTION_SECONDS: Final = 7 * 24 * 3600.0  # Kafka's retention.ms default: 7 days
DEFAULT_RETENTION_BYTES: Final = 1 << 30  # 1 GiB per Broker log (Kafka's default: unlimited)
DEFAULT_RETENTION_INTERVAL: Final = 30.0

_UNLIMITED: Final = ("none", "off", "-1")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?", re.IGNORECASE)
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?", re.IGNORECASE)
_SIZE_UNITS: Final = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


@dataclass(frozen=True)
class RetentionPolicy:
    """``max_age_seconds`` / ``max_bytes`` of None: no limit of that kind. ``max_bytes`` is the
    whole log of one Broker, split evenly across its partitions (Kafka counts per partition)."""

    max_age_seconds: float | None = DEFAULT_RETENTION_SECONDS
    max_bytes: int | None = DEFAULT_RETENTION_BYTES
    interval: float = DEFAULT_RETENTION_INTERVAL

    def __post_init__(self) -> None:
        if self.max_age_seconds is not None and self.max_age_seconds <= 0:
            raise ValueError(f"retention must be > 0 s, got {self.max_age_seconds:g}")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError(f"retention bytes must be > 0, got {self.max_bytes}")
        if self.interval <= 0:
            raise ValueError(f"retention interval must be > 0 s, got {self.interval:g}")

    @property
    def enabled(self) -> bool:
        return self.max_age_seconds is not None or self.max_bytes is not None


@dataclass(frozen=True)
class Pruned:
    records: int = 0
    bytes: int = 0
    kept_bytes: int = 0  # what the log holds after the pass
    held_back: int = 0  # records over a limit kept because a Trigger has not finished them


@runtime_checkable
class Retentive(Protocol):
    """A log that applies :class:`RetentionPolicy` itself (the sqlite log)."""

    def enforce_retention(
        self, policy: RetentionPolicy, groups: Collection[str], now: float | None = None
    ) -> Pruned: ...


def parse_duration(text: str) -> float | None:
    """``7d``, ``12h``, ``30m``, ``90s``, ``500ms`` or plain seconds; ``none`` for no limit."""
    value = text.strip()
    if value.lower() in _UNLIMITED:
        return None
    match = _DURATION.fullmatch(value)
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"{text!r} is not a duration > 0 like 7d, 12h, 30m, 90s (or none)")
    return float(match[1]) * _DURATION_UNITS[(match[2] or "s").lower()]


def parse_size(text: str) -> int | None:
    """``1GiB``, ``512MiB``, ``100MB``, ``65536`` (bytes); ``none`` for no limit."""
    value = text.strip()
    if value.lower() in _UNLIMITED:
        return None
    match = _SIZE.fullmatch(value)
    if match is None or float(match[1]) < 1:
        raise ValueError(f"{text!r} is not a size like 1GiB, 512MiB, 100MB, 65536 (or none)")
    return int(float(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()])


async def keep_retention(
    logs: Sequence[tuple[str, Retentive, Collection[str]]],
    policy: RetentionPolicy,
    in_thread: Callable[..., Awaitable[Pruned]],
) -> None:
    """Every ``policy.interval`` seconds, one retention pass over each (name, log, groups)
    until cancelled; ``in_thread`` runs the blocking pass off the event loop."""
    while True:
        await asyncio.sleep(policy.interval)
        for name, log, groups in logs:
            try:
                pruned = await in_thread(log.enforce_retention, policy, groups)
            except LogError as exc:
                logger.error("retention of the log of %s failed: %s", name, exc)
                continue
            if pruned.records:
                logger.info(
                    "retention: dropped %d records (%d bytes) of %s; %d bytes kept",
                    pruned.records,
                    pruned.bytes,
                    name,
                    pruned.kept_bytes,
                )
            if pruned.held_back:
                logger.warning(
                    "retention: %d records of %s are past a limit but kept: a Trigger has not "
                    "finished them",
                    pruned.held_back,
                    name,
                )


def start_retention(
    logs: Mapping[tuple[str, str], BrokerLog],
    triggers: Iterable[tuple[str, str, str]],
    policy: RetentionPolicy,
    executor: Executor,
) -> asyncio.Task[None] | None:
    """Start :func:`keep_retention` for the logs that apply retention themselves; ``triggers``
    are (namespace, broker, consumer group). None when there is nothing to do."""
    groups: dict[tuple[str, str], set[str]] = {key: set() for key in logs}
    for namespace, broker, group in triggers:
        groups.setdefault((namespace, broker), set()).add(group)
    targets = [
        (f"{namespace}/{broker}", log, frozenset(groups[namespace, broker]))
        for (namespace, broker), log in sorted(logs.items())
        if isinstance(log, Retentive)
    ]
    if not policy.enabled or not targets:
        return None
    loop = asyncio.get_running_loop()

    def in_thread(function: Callable[..., Pruned], *args: object) -> Awaitable[Pruned]:
        return loop.run_in_executor(executor, function, *args)

    return loop.create_task(keep_retention(targets, policy, in_thread), name="retention")

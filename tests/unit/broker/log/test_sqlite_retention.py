"""Retention of the sqlite log: bounded by size and age under continuous load, and never a
record a Trigger's consumer group has not committed past."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from cascade.broker.event import StoredEvent
from cascade.broker.log.retention import RetentionPolicy, parse_duration, parse_size
from cascade.broker.log.sqlite import SqliteLog

PAYLOAD = b"x" * 1000
KiB = 1024
MiB = 1024 * KiB


def event(n: int, key: str | None = None) -> StoredEvent:
    attributes = {"specversion": "1.0", "id": f"e-{n}", "source": "/test", "type": "t"}
    if key is not None:
        attributes["partitionkey"] = key
    return StoredEvent(attributes, PAYLOAD)


def commit_all(log: SqliteLog, group: str) -> None:
    log.commit(group, {p: log.end_offset(p) for p in range(log.partitions)})


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def records(log: SqliteLog) -> int:
    return sum(len(log.read(p, 0, 10**9)) for p in range(log.partitions))


def test_disk_use_stays_bounded_under_continuous_load(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = SqliteLog(path, partitions=4)
    limit = 256 * KiB
    policy = RetentionPolicy(max_age_seconds=None, max_bytes=limit)
    batch = [(event(n), None) for n in range(200)]
    batch_bytes = sum(len(e.data) for e, _ in batch) * 2  # data plus attributes, generously
    written = 0
    disk_after_warmup = 0
    for round_ in range(100):  # 20,000 records, ~20 MB through a 256 KiB log
        log.append_many(batch)
        written += len(batch) * len(PAYLOAD)
        commit_all(log, "trigger-a")
        commit_all(log, "trigger-b")
        pruned = log.enforce_retention(policy, {"trigger-a", "trigger-b"})
        assert pruned.held_back == 0
        assert log.size_bytes() <= limit
        assert pruned.kept_bytes == log.size_bytes()
        if round_ == 19:
            disk_after_warmup = disk_bytes(path)
    assert records(log) <= limit // len(PAYLOAD)
    # The file stops growing once retention drops as much as arrives: freed pages are reused.
    assert disk_bytes(path) <= disk_after_warmup + 2 * batch_bytes
    assert disk_bytes(path) < written // 4
    # The bytes it counts are the bytes stored.
    with sqlite3.connect(path) as conn:
        (stored,) = conn.execute(
            "SELECT SUM(length(attributes) + length(data) + COALESCE(length(headers), 0))"
            " FROM records"
        ).fetchone()
    assert stored == log.size_bytes()
    log.close()


def test_a_record_a_trigger_has_not_committed_past_is_never_dropped(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.sqlite3", partitions=1)
    log.append_many([(event(n), None) for n in range(1000)])
    commit_all(log, "fast")
    log.commit("slow", {0: 100})  # a Trigger still at offset 100 (retrying, or dead-lettering)
    policy = RetentionPolicy(max_age_seconds=1.0, max_bytes=10 * KiB)
    pruned = log.enforce_retention(policy, {"fast", "slow"}, now=time.time() + 3600)
    assert pruned.records == 100
    assert pruned.held_back == 900
    kept = log.read(0, 100, 10**9)
    assert [r.offset for r in kept] == list(range(100, 1000))  # everything slow still needs
    assert log.read(0, 0, 1)[0].offset == 100
    log.commit("slow", {0: 1000})
    log.enforce_retention(policy, {"fast", "slow"})
    assert log.size_bytes() <= 10 * KiB
    log.close()


def test_a_group_without_a_commit_keeps_its_partition(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.sqlite3", partitions=2)
    log.append_many([(event(n, key=f"k{n % 7}"), None) for n in range(200)])
    commit_all(log, "a")
    log.commit("b", {0: log.end_offset(0)})  # b has not committed partition 1 at all
    policy = RetentionPolicy(max_age_seconds=None, max_bytes=1)
    log.enforce_retention(policy, {"a", "b"})
    assert len(log.read(0, 0, 10**9)) == 1  # the newest record of a partition always stays
    assert len(log.read(1, 0, 10**9)) == log.end_offset(1)
    # Groups the Broker's Triggers do not use (a removed Trigger) do not hold anything back.
    log.commit("removed-trigger", {0: 0, 1: 0})
    log.enforce_retention(policy, {"a"})
    assert len(log.read(1, 0, 10**9)) == 1
    log.close()


def test_age_drops_only_older_records_and_offsets_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = SqliteLog(path, partitions=1)
    log.append_many([(event(n), None) for n in range(50)])
    commit_all(log, "g")
    policy = RetentionPolicy(max_age_seconds=60.0, max_bytes=None)
    assert log.enforce_retention(policy, {"g"}).records == 0  # all younger than a minute
    assert log.enforce_retention(policy, {"g"}, now=time.time() + 120).records == 49
    log.close()
    reopened = SqliteLog(path, partitions=1)
    assert reopened.end_offset(0) == 50
    assert reopened.append(event(50)) == (0, 50)
    assert [r.offset for r in reopened.read(0, 0, 10)] == [49, 50]
    reopened.close()


def test_a_log_written_before_retention_existed_opens_and_ages_out(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    log = SqliteLog(path, partitions=1)
    log.append_many([(event(n), None) for n in range(5)])
    log.close()
    with sqlite3.connect(path) as conn:  # the format-1 table had no appended_at
        conn.execute("ALTER TABLE records DROP COLUMN appended_at")
    log = SqliteLog(path, partitions=1)
    commit_all(log, "g")
    pruned = log.enforce_retention(RetentionPolicy(max_age_seconds=1.0, max_bytes=None), {"g"})
    assert pruned.records == 4
    log.close()


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 604800.0), ("12h", 43200.0), ("90", 90.0), ("none", None)]
)
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"), [("1GiB", 1 << 30), ("100MB", 10**8), ("65536", 65536), ("off", None)]
)
def test_sizes(text: str, size: int | None) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "-5s", "soon", "1y"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)

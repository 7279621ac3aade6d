"""SqliteLog specifics beyond the shared contract: WAL reads, file checks, options."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from cascade.broker.event import StoredEvent
from cascade.broker.log.base import LogError
from cascade.broker.log.sqlite import SqliteLog


def _event(event_id: str) -> StoredEvent:
    return StoredEvent({"specversion": "1.0", "id": event_id, "source": "/s", "type": "t"}, b"x")


def test_reads_do_not_wait_for_a_held_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    log = SqliteLog(path, 1)
    try:
        log.append(_event("a"))
        log.commit("g", {0: 1})
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # holds SQLite's single write lock
            blocker.execute("INSERT INTO meta (key, value) VALUES ('held', 'yes')")
            done = threading.Event()
            seen: list[object] = []

            def reader() -> None:
                seen.append([r.event.attributes["id"] for r in log.read(0, 0, 10)])
                seen.append(log.committed("g", 0))
                seen.append(log.end_offset(0))
                done.set()

            thread = threading.Thread(target=reader)
            thread.start()
            # The busy timeout for writers is 10 s; readers must finish long before.
            assert done.wait(timeout=5), "read blocked behind a write transaction"
            thread.join(timeout=5)
            assert seen == [["a"], 1, 1]
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
    finally:
        log.close()


def test_full_synchronous_mode_works_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "full.sqlite3"
    log = SqliteLog(path, 2, synchronous="FULL")
    log.append_many([(_event("a"), None), (_event("b"), None)])
    log.close()
    again = SqliteLog(path, 2)
    try:
        assert [again.end_offset(0), again.end_offset(1)] == [1, 1]
    finally:
        again.close()
    with pytest.raises(ValueError, match="synchronous"):
        SqliteLog(path, 2, synchronous="OFF")  # type: ignore[arg-type]


def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    SqliteLog(path, 1).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LogError, match=r"junk\.sqlite3"):
        SqliteLog(path, 1)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="cannot open broker log"):
        SqliteLog(tmp_path / "no" / "such" / "dir.sqlite3", 1)


def test_a_second_writer_on_the_same_file_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "two.sqlite3"
    first = SqliteLog(path, 1)
    second = SqliteLog(path, 1)
    try:
        first.append(_event("first"))
        with pytest.raises(LogError, match="another process"):
            second.append(_event("second"))
        assert [r.event.attributes["id"] for r in first.read(0, 0, 10)] == ["first"]
    finally:
        first.close()
        second.close()


def test_text_that_has_no_utf8_form_is_refused(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "s.sqlite3", 1)
    try:
        with pytest.raises(ValueError, match="not valid text"):
            log.append(StoredEvent({"id": "\udcff"}, b""))
        assert log.end_offset(0) == 0
    finally:
        log.close()


def test_failed_group_append_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite3"
    log = SqliteLog(path, 1)
    intruder = sqlite3.connect(path, isolation_level=None)
    try:
        log.append(_event("a"))
        # Another writer takes offset 2 behind the log's back: the batch (offsets 1..3) clashes.
        intruder.execute(
            "INSERT INTO records (partition_id, record_offset, attributes, data)"
            " VALUES (0, 2, '{}', x'')"
        )
        with pytest.raises(LogError, match="another process"):
            log.append_many([(_event(f"b{i}"), None) for i in range(3)])
        assert [r.offset for r in log.read(0, 0, 10)] == [0, 2]  # none of the batch
        assert log.end_offset(0) == 1
    finally:
        intruder.close()
        log.close()

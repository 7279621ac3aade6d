"""Dedupe on (source, id) with the default SQLite store."""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import pytest

from cascade.settings import Settings
from cascade.testing import FunctionClient
from tests.unit.runtime import idempotency_checks as checks


def test_duplicate_runs_effects_once_and_resends_the_reply(
    client: FunctionClient, probe: ModuleType
) -> None:
    checks.duplicate_runs_effects_once(client, probe, "dup")


def test_duplicate_of_a_204_answer_is_204(client: FunctionClient, probe: ModuleType) -> None:
    event = probe.Command(action="none", key="n")
    assert client.send(event, event_id="n1").status == 204
    second = client.send(event, event_id="n1")
    assert (second.status, second.body) == (204, b"")
    assert (
        client.metric(
            "cascade_events_total",
            {"function": "probe", "type": "com.example.probe.command", "outcome": "duplicate"},
        )
        == 1
    )


def test_same_id_from_another_source_is_another_event(
    client: FunctionClient, probe: ModuleType
) -> None:
    checks.same_id_other_source_is_another_event(client, probe, "src")


def test_failures_roll_back_and_leave_no_record(client: FunctionClient, probe: ModuleType) -> None:
    checks.failures_leave_no_record(client, probe, "fail")


def test_concurrent_duplicates_run_once(client: FunctionClient, probe: ModuleType) -> None:
    checks.concurrent_duplicates_run_once(client, probe, "conc")


def test_idempotency_off_runs_every_delivery(probe: ModuleType, tmp_path: Path) -> None:
    probe.calls.clear()
    with FunctionClient(probe.fn, Settings(data_dir=tmp_path, idempotency=False)) as client:
        event = probe.Command(action="reply", key="off")
        first = client.send(event, event_id="x")
        second = client.send(event, event_id="x")
        assert first.reply(probe.Done).effects == 1
        assert second.reply(probe.Done).effects == 2
        assert checks.dedupe_records(client) == 0


def test_sqlite_file_lives_in_the_data_dir_in_wal_mode(
    client: FunctionClient, tmp_path: Path, probe: ModuleType
) -> None:
    client.send(probe.Command())
    assert (tmp_path / "probe.sqlite3").is_file()
    with client.runtime.store.engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"


def test_expired_records_are_purged(client: FunctionClient, probe: ModuleType) -> None:
    client.send(probe.Command(action="none"), event_id="old")
    deduper = client.runtime.dispatcher.deduper
    assert deduper is not None
    with client.runtime.store.engine.begin() as connection:
        assert deduper.purge(connection, now=time.time()) == 0
    with client.runtime.store.engine.begin() as connection:
        assert deduper.purge(connection, now=time.time() + deduper.ttl_seconds + 1) == 1
    assert checks.dedupe_records(client) == 0


def test_purge_runs_at_most_once_per_interval(client: FunctionClient) -> None:
    deduper = client.runtime.dispatcher.deduper
    assert deduper is not None
    assert deduper.purge_due(now=1000.0) is True
    assert deduper.purge_due(now=1001.0) is False
    assert deduper.purge_due(now=1000.0 + 7 * 24 * 36) is True


def test_unknown_dialect_is_refused() -> None:
    from cascade.idempotency import Deduper

    with pytest.raises(ValueError, match="SQLite or PostgreSQL"):
        Deduper("x", "mysql", 60)

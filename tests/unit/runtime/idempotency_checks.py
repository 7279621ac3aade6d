"""Idempotency checks shared by the SQLite unit tests and the PostgreSQL integration tests."""

from __future__ import annotations

import threading
from types import ModuleType

from sqlalchemy import func, select

from cascade.store import dedupe_table
from cascade.testing import EventResult, FunctionClient


def effects(client: FunctionClient, probe: ModuleType, key: str) -> int:
    with client.runtime.store.session() as session:
        count = session.scalar(select(probe.Effect.count).where(probe.Effect.key == key))
    return int(count or 0)


def dedupe_records(client: FunctionClient, key: str = "") -> int:
    """Dedupe records of this function (whose event id starts with ``key``)."""
    with client.runtime.store.session() as session:
        count = session.scalar(
            select(func.count()).where(
                dedupe_table.c.function == client.function.name,
                dedupe_table.c.event_id.startswith(key),
            )
        )
    return int(count or 0)


def duplicate_runs_effects_once(client: FunctionClient, probe: ModuleType, key: str) -> None:
    event = probe.Command(action="reply", key=key)
    first = client.send(event, event_id=f"{key}-1")
    second = client.send(event, event_id=f"{key}-1")
    assert first.status == second.status == 200
    assert second.body == first.body
    assert second.attributes == first.attributes  # same reply id, time, origin
    assert effects(client, probe, key) == 1
    assert probe.calls.count(f"{key}-1") == 1
    assert client.metric("cascade_duplicates_total", {"function": client.function.name}) == 1


def same_id_other_source_is_another_event(
    client: FunctionClient, probe: ModuleType, key: str
) -> None:
    event = probe.Command(action="none", key=key)
    assert client.send(event, event_id="same", source="/a").status == 204
    assert client.send(event, event_id="same", source="/b").status == 204
    assert client.send(event, event_id="same", source="/a").status == 204
    assert effects(client, probe, key) == 2


def failures_leave_no_record(client: FunctionClient, probe: ModuleType, key: str) -> None:
    for action, status in (("retry", 503), ("dead", 422), ("boom", 500), ("drop", 204)):
        event_id = f"{key}-{action}"
        event = probe.Command(action=action, key=key)
        assert client.send(event, event_id=event_id).status == status
        assert client.send(event, event_id=event_id).status == status
        assert probe.calls.count(event_id) == 2  # ran again: nothing was recorded
    assert effects(client, probe, key) == 0
    assert dedupe_records(client, key) == 0
    # A redelivery that now succeeds commits once and is then deduplicated.
    fixed = probe.Command(action="none", key=key)
    assert client.send(fixed, event_id=f"{key}-retry").status == 204
    assert client.send(fixed, event_id=f"{key}-retry").status == 204
    assert effects(client, probe, key) == 1


def concurrent_duplicates_run_once(
    client: FunctionClient, probe: ModuleType, key: str, deliveries: int = 6
) -> None:
    """Several threads deliver one event at the same moment; the handler holds its
    transaction open for a while so the deliveries really overlap."""
    event = probe.Command(action="slow", key=key, seconds=0.3)
    barrier = threading.Barrier(deliveries)
    results: list[EventResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def deliver() -> None:
        try:
            barrier.wait(timeout=30)
            result = client.send(event, event_id=f"{key}-concurrent")
            with lock:
                results.append(result)
        except BaseException as exc:  # surfaced below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(deliveries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert [r.status for r in results] == [200] * deliveries
    assert len({r.body for r in results}) == 1
    assert len({r.attributes["id"] for r in results}) == 1
    assert effects(client, probe, key) == 1
    assert probe.calls.count(f"{key}-concurrent") == 1
    assert (
        client.metric("cascade_duplicates_total", {"function": client.function.name})
        == deliveries - 1
    )

"""Event transactions on a SQLite file keep one pooled connection per thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from cascade import thread_connections as module
from cascade.idempotency import Deduper
from cascade.store import Store
from cascade.thread_connections import ThreadConnections


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'state.sqlite3'}")
    store.create_all()
    yield store
    store.dispose()


def _in_thread(work: object) -> object:
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(work()))  # type: ignore[operator]
    thread.start()
    thread.join(timeout=30)
    assert result, "the thread did not finish"
    return result[0]


def test_a_thread_gets_the_same_connection_and_another_thread_its_own(store: Store) -> None:
    held = ThreadConnections(store.engine)
    mine = held.acquire()
    assert held.acquire() is mine
    theirs = _in_thread(held.acquire)
    assert theirs is not mine
    assert store.engine.pool.checkedout() == 2  # type: ignore[attr-defined]
    held.release_all()
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert not mine.is_valid  # given back: the next acquire checks a connection out again
    assert held.acquire().is_valid


def test_an_invalidated_connection_is_replaced(store: Store) -> None:
    held = ThreadConnections(store.engine)
    first = held.acquire()
    first.invalidate(RuntimeError("the link broke"))
    second = held.acquire()
    assert second is not first
    assert second.is_valid
    held.release_all()
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_forked_child_does_not_reuse_its_parents_connection(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = ThreadConnections(store.engine)
    parents = held.acquire()
    monkeypatch.setattr(module.os, "getpid", lambda: -1)
    assert held.acquire() is not parents


def test_events_of_one_thread_share_a_connection_that_dispose_gives_back(store: Store) -> None:
    deduper = Deduper("f", "sqlite", ttl_seconds=3600)
    for n in range(3):
        transaction = store.event_transaction()
        assert deduper.claim(transaction, "/src", f"e{n}") is None
        transaction.commit()
        transaction.close()
    assert store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    store.dispose()
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_transaction_closed_uncommitted_is_rolled_back(store: Store) -> None:
    deduper = Deduper("f", "sqlite", ttl_seconds=3600)
    transaction = store.event_transaction()
    assert deduper.claim(transaction, "/src", "lost") is None
    transaction.close()  # the handler failed: nothing was committed
    again = store.event_transaction()
    assert deduper.claim(again, "/src", "lost") is None  # claimed anew: no row was left
    again.rollback()
    again.close()
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM cascade_dedupe")).scalar_one()
    assert rows == 0


def test_a_session_commits_on_the_held_connection_and_leaves_it_idle(store: Store) -> None:
    deduper = Deduper("f", "sqlite", ttl_seconds=3600)
    transaction = store.event_transaction()
    assert deduper.claim(transaction, "/src", "with-session") is None
    session = transaction.open_session()
    session.execute(
        text(
            "INSERT INTO cascade_dedupe (function, source, event_id, status, headers, body,"
            " created_at) VALUES ('g', '/src', 'effect', 200, '{}', x'', 0)"
        )
    )
    transaction.commit()
    transaction.close()
    # The next event of this thread begins cleanly on the same connection and sees both rows.
    following = store.event_transaction()
    assert deduper.claim(following, "/src", "with-session") is not None
    following.rollback()
    following.close()
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT count(*) FROM cascade_dedupe")).scalar_one()
    assert rows == 2


def test_more_threads_than_the_pool_size_neither_block_nor_starve_other_users(
    store: Store,
) -> None:
    deduper = Deduper("f", "sqlite", ttl_seconds=3600)
    threads = 24  # SQLAlchemy's default pool holds 5 + 10 overflow
    committed, done = threading.Barrier(threads + 1), threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def one_event(n: int) -> None:
        try:
            transaction = store.event_transaction()
            assert deduper.claim(transaction, "/src", f"t{n}") is None
            transaction.commit()
            transaction.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        committed.wait(timeout=60)
        done.wait(timeout=60)  # keep the thread, and so its connection, alive

    workers = [threading.Thread(target=one_event, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()

    def count() -> object:
        with store.session() as session:
            return session.execute(text("SELECT count(*) FROM cascade_dedupe")).scalar()

    try:
        committed.wait(timeout=60)
        # Every thread now holds a connection; a Session still gets one of its own.
        counted = _in_thread(count)
    finally:
        done.wait(timeout=60)
        for worker in workers:
            worker.join(timeout=60)
    assert errors == []
    assert counted == threads

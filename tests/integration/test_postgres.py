"""Idempotency and state on real PostgreSQL (psycopg 3), in-process and across workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from psycopg import DataError
from psycopg.pq import TransactionStatus
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from cascade import Event, Function
from cascade import store as store_module
from cascade.loader import load_module
from cascade.pg_batch import run_batch
from cascade.settings import Settings
from cascade.store import Store
from cascade.testing import FunctionClient
from tests.integration.postgres import postgres_schema, throwaway_schema
from tests.integration.server import PROBE, send_at_once, serve
from tests.unit.runtime import idempotency_checks as checks

__all__ = ["postgres_schema"]

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return load_module(PROBE)


@pytest.fixture
def client(probe: ModuleType, postgres_schema: str, tmp_path: Path) -> Iterator[FunctionClient]:
    probe.calls.clear()
    settings = Settings(data_dir=tmp_path, database_url=postgres_schema)
    with FunctionClient(probe.fn, settings) as c:
        yield c


def test_store_is_postgres_in_its_own_schema(client: FunctionClient, postgres_schema: str) -> None:
    assert client.runtime.store.dialect == "postgresql"
    with client.runtime.store.engine.connect() as connection:
        schema = connection.execute(text("select current_schema()")).scalar()
    assert schema is not None
    assert schema in postgres_schema


def test_duplicate_runs_effects_once(client: FunctionClient, probe: ModuleType) -> None:
    checks.duplicate_runs_effects_once(client, probe, "pg-dup")


def test_same_id_other_source(client: FunctionClient, probe: ModuleType) -> None:
    checks.same_id_other_source_is_another_event(client, probe, "pg-src")


def test_failures_leave_no_record(client: FunctionClient, probe: ModuleType) -> None:
    checks.failures_leave_no_record(client, probe, "pg-fail")


def test_concurrent_duplicates_via_threads_run_once(
    client: FunctionClient, probe: ModuleType
) -> None:
    checks.concurrent_duplicates_run_once(client, probe, "pg-conc")


def test_two_apps_on_one_database_dedupe_together(
    probe: ModuleType, postgres_schema: str, tmp_path: Path
) -> None:
    """Two independent apps (own engines and pools, like two pods) get one event at once."""
    settings = Settings(data_dir=tmp_path, database_url=postgres_schema)
    with FunctionClient(probe.fn, settings) as one, FunctionClient(probe.fn, settings) as two:
        event = probe.Command(action="slow", seconds=0.3, key="pg-pods")
        barrier = threading.Barrier(2)
        results: dict[str, int] = {}

        def deliver(name: str, client: FunctionClient) -> None:
            barrier.wait(timeout=30)
            results[name] = client.send(event, event_id="pods-1").status

        threads = [
            threading.Thread(target=deliver, args=(name, c))
            for name, c in (("one", one), ("two", two))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert results == {"one": 200, "two": 200}
        assert checks.effects(one, probe, "pg-pods") == 1
        duplicates = one.metric("cascade_duplicates_total", {"function": "probe"}) + two.metric(
            "cascade_duplicates_total", {"function": "probe"}
        )
        assert duplicates == 1


def test_plain_postgresql_url_uses_psycopg(postgres_schema: str) -> None:
    plain = postgres_schema.replace("postgresql+psycopg://", "postgresql://", 1)
    assert Settings(database_url=plain).database_url_for("x").startswith("postgresql+psycopg://")


def _kill_pooled_connection(store: store_module.Store) -> None:
    """Terminate the server side of the pool's only connection, as a restart would."""
    with store.engine.connect() as connection:
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    killer = create_engine(store.url)
    try:
        with killer.begin() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        killer.dispose()


def test_a_pooled_connection_that_died_while_idle_is_replaced(
    postgres_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_module.Store(postgres_schema)
    try:
        _kill_pooled_connection(store)
        monkeypatch.setattr(store_module, "PING_IDLE_SECONDS", 0.0)  # it has been idle "long"
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        store.dispose()


def test_a_connection_in_steady_use_is_not_pinged(
    postgres_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The counterpart of the test above: without the idle ping the dead connection is handed
    # out, so that test passes because of the ping (and a busy pool skips the round trip).
    store = store_module.Store(postgres_schema)
    try:
        _kill_pooled_connection(store)
        monkeypatch.setattr(store_module, "PING_IDLE_SECONDS", 3600.0)
        with pytest.raises(OperationalError), store.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    finally:
        store.dispose()


@pytest.mark.slow
def test_served_workers_share_postgres(postgres_schema: str, tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2", env={"DATABASE_URL": postgres_schema}) as server:
        results = send_at_once(
            server, {"action": "slow", "seconds": 0.3, "key": "pg-served"}, "pg-served-1"
        )
        assert [r.status for r in results] == [200] * 4
        assert len({r.body for r in results}) == 1
        assert server.metric('cascade_duplicates_total{function="probe"}') == 3.0
    assert not (tmp_path / ".cascade").exists()  # nothing fell back to SQLite


def _create_all_at_once(stores: list[Store]) -> list[BaseException]:
    """Run every store's create_all in its own thread, released together; the errors."""
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def start(store: Store) -> None:
        barrier.wait()
        try:
            store.create_all()
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_functions_starting_together_create_shared_tables_once() -> None:
    """Every function of a shop creates the runtime's tables in one shared database at start
    (five processes on `cascade run --state postgres`, or pods on a cluster); two CREATE TABLEs
    racing in PostgreSQL fail one of them with a unique violation on pg_type."""
    for _ in range(3):  # a race: each round starts on an empty schema
        with throwaway_schema("cascade_race") as url:
            stores = [Store(url) for _ in range(8)]
            errors = _create_all_at_once(stores)
            for store in stores:
                store.dispose()
            assert errors == []


class Ping(Event, type="com.example.pg.ping"):
    key: str
    fail: bool = False
    seconds: float = 0.0


class Pong(Event, type="com.example.pg.pong"):
    key: str


storeless = Function("storeless")
storeless_calls: list[str] = []


@storeless.on(Ping)
def pong(event: Ping) -> Pong:
    # No ctx.store: the dedupe statements alone, BEGIN and COMMIT sent with them.
    storeless_calls.append(event.key)
    time.sleep(event.seconds)
    if event.fail:
        raise RuntimeError("the handler failed")
    return Pong(key=event.key)


def _pooled_connection_is_clean(client: FunctionClient) -> None:
    """What goes back to the pool is idle and out of autocommit, as it came."""
    raw = client.runtime.store.engine.raw_connection()
    try:
        dbapi: Any = raw.dbapi_connection
        assert dbapi.autocommit is False
        assert dbapi.info.transaction_status == TransactionStatus.IDLE
    finally:
        raw.close()


def test_storeless_handler_runs_once_and_duplicates_get_its_reply(
    postgres_schema: str, tmp_path: Path
) -> None:
    storeless_calls.clear()
    settings = Settings(data_dir=tmp_path, database_url=postgres_schema)
    with FunctionClient(storeless, settings) as client:
        first = client.send(Ping(key="a"), event_id="pg-a")
        _pooled_connection_is_clean(client)
        second = client.send(Ping(key="a"), event_id="pg-a")
        assert first.status == second.status == 200
        assert second.body == first.body
        assert second.attributes == first.attributes
        assert storeless_calls == ["a"]
        _pooled_connection_is_clean(client)
        # A failure rolls the claim back: the redelivery runs the handler again.
        assert client.send(Ping(key="b", fail=True), event_id="pg-b").status == 500
        _pooled_connection_is_clean(client)
        assert client.send(Ping(key="b"), event_id="pg-b").status == 200
        assert storeless_calls == ["a", "b", "b"]
        assert checks.dedupe_records(client) == 2


def test_storeless_concurrent_duplicates_run_once(postgres_schema: str, tmp_path: Path) -> None:
    storeless_calls.clear()
    settings = Settings(data_dir=tmp_path, database_url=postgres_schema)
    with FunctionClient(storeless, settings) as client:
        barrier = threading.Barrier(5)
        statuses: list[int] = []

        def deliver() -> None:
            barrier.wait(timeout=30)
            statuses.append(client.send(Ping(key="c", seconds=0.3), event_id="pg-c").status)

        threads = [threading.Thread(target=deliver) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert statuses == [200] * 5
        assert storeless_calls == ["c"]
        _pooled_connection_is_clean(client)


def test_storeless_event_on_a_connection_that_died_fails_once_then_recovers(
    postgres_schema: str, tmp_path: Path
) -> None:
    storeless_calls.clear()
    settings = Settings(data_dir=tmp_path, database_url=postgres_schema)
    with FunctionClient(storeless, settings) as client:
        assert client.send(Ping(key="d"), event_id="pg-d1").status == 200
        _kill_pooled_connection(client.runtime.store)
        # Used a moment ago, so not pinged: the claim meets the dead link, the event is
        # answered 500 (redelivered later) and the connection is dropped from the pool.
        assert client.send(Ping(key="d"), event_id="pg-d2").status == 500
        assert client.send(Ping(key="d"), event_id="pg-d2").status == 200
        assert storeless_calls == ["d", "d"]
        _pooled_connection_is_clean(client)


def test_batched_statements_quote_hostile_values(postgres_schema: str) -> None:
    hostile = "x'); DROP TABLE cascade_dedupe; --\\ é"
    store = store_module.Store(postgres_schema)
    try:
        raw = store.engine.raw_connection()
        try:
            row = run_batch(
                raw.dbapi_connection,
                "SELECT %s, encode(%s, 'hex'), %s, %s, %s",
                (hostile, b"\x00'\xff", 1.5, 7, None),
            )
            assert row == (hostile, "0027ff", "1.5", "7", None)
            with pytest.raises(DataError):
                run_batch(raw.dbapi_connection, "SELECT %s", ("a\x00b",))
        finally:
            raw.close()
    finally:
        store.dispose()

"""SQL state for functions (SQLAlchemy 2): SQLite by default, PostgreSQL via DATABASE_URL.

A function declares its tables on its own ``MetaData`` (``Function("x", metadata=...)``); the
runtime creates them at start next to its own dedupe table, and hands the handler a Session
inside the event's transaction (``ctx.store``).

SQLite is tuned for several gunicorn workers and threads sharing one file: WAL journal, a busy
timeout, and ``BEGIN IMMEDIATE`` so a transaction takes the write lock up front instead of
failing with "database is locked" when it later tries to upgrade a read lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    DisconnectionError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from cascade.thread_connections import ThreadConnections

__all__ = ["EventTransaction", "Store", "StoreError", "dedupe_table", "store_refusal"]

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
# Execution option for connections that only read: SQLite then begins a deferred
# transaction instead of taking the write lock up front.
READ_ONLY = "cascade_read_only"
# Execution option for a Connection wrapped around a DBAPI connection whose transaction has
# already begun (EventTransaction): SQLAlchemy's begin must not issue BEGIN again.
BEGUN = "cascade_begun"
# PostgreSQL advisory lock key held while creating tables ("cascade" in ASCII).
SCHEMA_LOCK_KEY = 0x636173636164
# A pooled server connection unused for longer than this is pinged before it is handed out
# (one round trip), so one that died meanwhile (a restart, an idle timeout) is replaced. A
# connection in steady use is not: pinging every checkout cost a round trip per event.
PING_IDLE_SECONDS = 5.0
_LAST_USED = "cascade_last_used"

_runtime_metadata = MetaData()


def store_refusal(exc: BaseException) -> str | None:
    """Why the store refused a value the models let through, or None for any other error.

    Such data fits the event's or request's model but not the database (a string longer than
    its column, a NUL in a PostgreSQL text field, an integer past the column's range): the
    input is at fault, so callers answer 422 (an event then goes to the dead-letter sink with
    this reason) instead of 500 and a retry that can never succeed.
    """
    if isinstance(exc, DataError):
        first_line = str(exc.orig).strip().splitlines()[:1] or ["(no detail)"]
        return f"the store refused a value: {first_line[0]}"
    # SQLite's driver raises this itself, before SQLAlchemy can wrap it.
    if isinstance(exc, OverflowError) and "SQLite INTEGER" in str(exc):
        return "the store refused a value: an integer is out of its column's range"
    return None


dedupe_table = Table(
    "cascade_dedupe",
    _runtime_metadata,
    # One table may serve many functions when they share a PostgreSQL database.
    Column("function", String(200), primary_key=True),
    Column("source", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("status", Integer, nullable=False),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False, index=True),
    # SQLite: the rows live in the primary key's B-tree. A rowid table kept them in a third
    # B-tree beside the key's index, one more page written to the WAL per event.
    sqlite_with_rowid=False,
)


outbox_table = Table(
    "cascade_outbox",
    _runtime_metadata,
    # Commit order: the relay sends in this order (cascade/outbox.py).
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("function", String(200), nullable=False),
    Column("event_id", Text, nullable=False),
    Column("partitionkey", Text),
    Column("attributes", Text, nullable=False),  # wire-form CloudEvents attributes, JSON
    Column("data", LargeBinary, nullable=False),
    Column("trace", Text),  # W3C trace context of the span that published it, JSON
    Column("created_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_until", Float),
    Column("failed_at", Float),  # refused by the sink for good: kept, no longer sent
    Column("last_error", Text),
    Index("cascade_outbox_by_function", "function", "failed_at", "seq"),
)


class StoreError(RuntimeError):
    """The store cannot be opened or initialised; the message says which URL and why."""


class Store:
    """An engine plus a session factory for one function's state."""

    def __init__(self, url: str, metadata: MetaData | None = None) -> None:
        self.url = url
        self.metadata = metadata
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(f"cannot parse database URL {url!r}: {exc}") from None
        self.dialect = parsed.get_backend_name()
        try:
            self.engine = _engine(url, self.dialect, parsed.database)
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(
                f"no driver for {parsed.drivername!r} ({exc}); for PostgreSQL install "
                "cascade[postgres] and use postgresql+psycopg://"
            ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # On SQLite a reading route's transaction is a plain (deferred) BEGIN: under WAL it
        # reads the last commit and never queues behind a writer for the write lock.
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )
        # Event transactions on a SQLite file keep their thread's connection (see
        # ThreadConnections); SQLAlchemy gives in-memory SQLite a pool of another kind.
        self._thread_connections = (
            ThreadConnections(self.engine)
            if self.dialect == "sqlite" and isinstance(self.engine.pool, QueuePool)
            else None
        )

    def create_all(self) -> None:
        """Create the runtime's and the function's tables when missing."""
        try:
            if self._tables_exist():
                return  # the usual case in a worker: the master created them before forking
            with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    # Functions sharing one database start together (cascade run, or pods):
                    # PostgreSQL fails one of two racing CREATE TABLEs, so they take turns.
                    # The lock ends with this transaction, and DDL is transactional there.
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY}
                    )
                _runtime_metadata.create_all(connection)
                if self.metadata is not None:
                    self.metadata.create_all(connection)
        except OperationalError as exc:
            raise StoreError(
                f"cannot initialise the store at {self.engine.url!r}: {exc.orig}"
            ) from None

    def _tables_exist(self) -> bool:
        wanted = set(_runtime_metadata.tables)
        if self.metadata is not None:
            wanted |= {table.name for table in self.metadata.sorted_tables}
        # A read-only check: on SQLite it must not queue for the write lock, or a booting
        # worker starves behind busy siblings.
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            names = set(inspect(connection).get_table_names())
        return wanted <= names

    def session(self) -> Session:
        """A new Session; the caller owns its transaction."""
        return self._sessions()

    def read_session(self) -> Session:
        """A new Session for reading (GET, HEAD and OPTIONS routes). On SQLite its transaction
        does not take the write lock, so it never waits behind a writer; a write in it may then
        fail with "database is locked" instead of waiting."""
        return self._read_sessions()

    def event_transaction(self) -> EventTransaction:
        """A transaction for one event on a pooled DBAPI connection (see EventTransaction)."""
        return EventTransaction(self.engine, self._thread_connections)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A Session inside one transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close every pooled connection (call before fork, and at shutdown)."""
        if self._thread_connections is not None:
            self._thread_connections.release_all()
        self.engine.dispose()


class EventTransaction:
    """One event's transaction, driven on the pooled DBAPI connection.

    The runtime's own statements (the dedupe claim and record) run on the DBAPI cursor: per
    event, SQLAlchemy's Connection and execution context cost more than those statements. A
    Session is made only when the handler asks for one, on a Connection wrapped around the
    same DBAPI connection and transaction, and then owns the commit (flush, commit, its
    ``after_commit`` hooks), so the handler's effects, its outbox rows and the runtime's
    statements still commit as one. DBAPI errors are raised wrapped as SQLAlchemy's, as the
    Session's are.

    On PostgreSQL each round trip to the server costs more than the statement it carries, so
    ``BEGIN`` travels with the first statement and ``COMMIT`` with the last when no Session
    is open (``fetch_one_and_commit``): two round trips per event. Both go as one simple
    query on libpq with the parameters as literals quoted by libpq (``cascade/pg_batch.py``).
    psycopg would send its own ``BEGIN`` first, so the connection is in autocommit mode
    while it is checked out (the server is inside our ``BEGIN`` meanwhile)
    and goes back to the pool as it came, idle and not in autocommit. On a SQLite file the
    connection is not given back: the thread keeps it for its next event (ThreadConnections).
    """

    __slots__ = (
        "_batched",
        "_begin",
        "_connection",
        "_dbapi",
        "_engine",
        "_held",
        "_raw",
        "session",
    )

    def __init__(self, engine: Engine, held: ThreadConnections | None = None) -> None:
        self._engine = engine
        # A held connection is this thread's for good: close() leaves it checked out.
        self._held = held is not None
        self._raw = engine.raw_connection() if held is None else held.acquire()
        dbapi: Any = self._raw.dbapi_connection
        self._dbapi = dbapi
        self._connection: Connection | None = None
        self.session: Session | None = None
        self._batched = engine.dialect.name == "postgresql"
        self._begin = self._batched  # BEGIN not sent yet: it goes with the first statement
        try:
            if self._batched:
                dbapi.autocommit = True
            else:
                dbapi.execute("BEGIN IMMEDIATE")
        except BaseException:
            if not self._held:
                self._raw.close()
            raise

    def fetch_one(self, statement: str, parameters: tuple[Any, ...]) -> Any:
        """Run one statement in DBAPI paramstyle; its first row, or None."""
        return self._execute(statement, parameters, commit=False)

    def inserted(self, statement: str, parameters: tuple[Any, ...]) -> bool:
        """Run an ``INSERT ... ON CONFLICT DO NOTHING``: did it insert a row? (SQLite only:
        its rowcount is exact, and one step cheaper than fetching a RETURNING row.)"""
        return bool(self._execute(statement, parameters, commit=False, rowcount=True))

    def fetch_one_and_commit(self, statement: str, parameters: tuple[Any, ...]) -> Any:
        """``fetch_one`` then ``commit``: on PostgreSQL without a Session, one round trip."""
        if self._batched and self.session is None:
            return self._execute(statement, parameters, commit=True)
        row = self._execute(statement, parameters, commit=False)
        self.commit()
        return row

    def _execute(
        self, statement: str, parameters: tuple[Any, ...], *, commit: bool, rowcount: bool = False
    ) -> Any:
        begin, self._begin = self._begin, False
        batched = begin or commit
        if batched:
            statement = f"{'BEGIN; ' if begin else ''}{statement}{'; COMMIT' if commit else ''}"
        cursor = None if batched else self._dbapi.cursor()
        try:
            if cursor is None:
                from cascade.pg_batch import run_batch  # PostgreSQL only: an optional driver

                return run_batch(self._dbapi, statement, parameters)
            cursor.execute(statement, parameters)
            if rowcount:
                return cursor.rowcount == 1
            return cursor.fetchone() if cursor.description else None
        except self._engine.dialect.loaded_dbapi.Error as exc:
            dialect = self._engine.dialect
            if dialect.is_disconnect(exc, self._dbapi, cursor) or _pg_broken(self._dbapi):
                self._raw.invalidate(exc)
            raise DBAPIError.instance(
                statement, parameters, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        finally:
            if cursor is not None:
                cursor.close()

    def open_session(self) -> Session:
        """The Session of this transaction (made at the first call)."""
        if self.session is None:
            if self._begin:
                self._begin = False
                self._dbapi.execute("BEGIN")
            connection = Connection(self._engine, connection=self._raw)
            connection.execution_options(**{BEGUN: True})
            connection.begin()
            self._connection = connection
            self.session = Session(
                bind=connection, join_transaction_mode="control_fully", expire_on_commit=False
            )
        return self.session

    def commit(self) -> None:
        if self.session is not None:
            self.session.commit()
        else:
            self._dbapi.commit()

    def rollback(self) -> None:
        """Roll back. If that fails (the connection is gone) the connection is discarded
        instead, so the error that caused the rollback is the one that surfaces."""
        try:
            if self.session is not None:
                self.session.rollback()
            else:
                self._dbapi.rollback()
        except Exception as exc:
            self._raw.invalidate(exc)

    def close(self) -> None:
        """Return the connection to the pool, or keep it for this thread's next event;
        either way with anything not committed rolled back."""
        if self.session is not None:
            self.session.close()
        if self._batched:
            self._leave_autocommit()
        if self._held:
            # Kept checked out: no pool reset will roll back, so do it here. The Connection
            # wrapped around it for a Session is dropped unclosed, as closing it would
            # return the connection to the pool.
            if self._raw.is_valid and self._dbapi.in_transaction:
                try:
                    self._dbapi.rollback()
                except Exception as exc:
                    self._raw.invalidate(exc)
        elif self._connection is not None:
            self._connection.close()
        else:
            self._raw.close()

    def _leave_autocommit(self) -> None:
        dbapi = self._dbapi
        if dbapi.closed:
            return  # invalidated: the pool drops it
        try:
            if dbapi.info.transaction_status != _pg_idle():
                dbapi.rollback()
            dbapi.autocommit = False
        except Exception as exc:
            self._raw.invalidate(exc)


def _pg_broken(dbapi_connection: Any) -> bool:
    """A psycopg connection whose libpq link failed (SQLite's has no ``pgconn``)."""
    pgconn = getattr(dbapi_connection, "pgconn", None)
    return pgconn is not None and pgconn.status != 0  # 0: libpq's CONNECTION_OK


def _pg_idle() -> Any:
    from psycopg.pq import TransactionStatus

    return TransactionStatus.IDLE


def _engine(url: str, dialect: str, database: str | None) -> Engine:
    if dialect != "sqlite":
        return _server_engine(url)
    plain_file = bool(database) and database != ":memory:" and not str(database).startswith("file:")
    if database and plain_file:
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of SQLite file {database}: {exc}") from None
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        # No cap on connections (each is a file handle): every worker thread keeps one
        # (ThreadConnections), however many threads CASCADE_THREADS asks for.
        **({"max_overflow": -1} if plain_file else {}),
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get(BEGUN, False):
            return
        read_only = options.get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _server_engine(url: str) -> Engine:
    """A PostgreSQL engine whose pool pings only connections that sat idle (PING_IDLE_SECONDS)."""
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) < PING_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out a fresh one.
            raise DisconnectionError(f"pooled connection is gone: {exc}") from exc
        if not alive:
            raise DisconnectionError("pooled connection is gone")
        record.info[_LAST_USED] = time.monotonic()

    return engine

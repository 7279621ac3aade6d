"""A broker log in one SQLite file (stdlib sqlite3, WAL mode): the default local backend.

Durability: SQLite runs in WAL mode with ``synchronous=NORMAL`` by default. Each append is a
committed transaction whose pages sit in the WAL file (in the OS page cache) before ``append``
returns, so it survives ``kill -9`` of the broker process; only a power loss or kernel crash can
lose the last commits, because NORMAL skips the fsync per commit. That is the same promise a
Kafka cluster gives with ``acks=all`` (replicated, not fsynced), at a fraction of the cost of an
fsync per event. Pass ``synchronous="FULL"`` to fsync the WAL on every commit and survive power
loss too.

Concurrency: one writer connection behind a lock (SQLite allows one writer at a time anyway) and a
pool of reader connections; WAL lets readers run while a write is in progress.
The file belongs to one ``SqliteLog`` at a time: offsets are counted in memory. A second writer
on the same file gets a clear error on its first clashing append instead of overwriting records.

Reopening keeps records, offsets and commits. The partition count is stored in the file; opening
it with a different count is a ``LogError`` (keyed routing would change silently otherwise).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import orjson

from cascade.broker.event import Record, StoredEvent
from cascade.broker.log._common import (
    PartitionChooser,
    check_event,
    check_group,
    check_headers,
    check_max_records,
    check_offset,
    check_partition,
    check_partition_count,
    closed_error,
)
from cascade.broker.log.base import BrokerLog, LogError

_FORMAT = "1"
_BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    partition_id INTEGER NOT NULL,
    record_offset INTEGER NOT NULL,
    attributes BLOB NOT NULL,
    data BLOB NOT NULL,
    headers BLOB,
    PRIMARY KEY (partition_id, record_offset)
);
CREATE TABLE IF NOT EXISTS commits (
    group_id TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL,
    PRIMARY KEY (group_id, partition_id)
) WITHOUT ROWID;
"""

_INSERT = (
    "INSERT INTO records (partition_id, record_offset, attributes, data, headers)"
    " VALUES (?, ?, ?, ?, ?)"
)
_SELECT = (
    "SELECT record_offset, attributes, data, headers FROM records"
    " WHERE partition_id = ? AND record_offset >= ? ORDER BY record_offset LIMIT ?"
)
_UPSERT_COMMIT = (
    "INSERT INTO commits (group_id, partition_id, committed_offset) VALUES (?, ?, ?)"
    " ON CONFLICT (group_id, partition_id)"
    " DO UPDATE SET committed_offset = excluded.committed_offset"
)


class SqliteLog(BrokerLog):
    """The broker log of one Broker in the SQLite file ``path``."""

    def __init__(
        self,
        path: Path,
        partitions: int,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        self.partitions = check_partition_count(partitions)
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = Path(path)
        self._synchronous = synchronous
        self._chooser = PartitionChooser(partitions)
        # Guards the writer connection, the offset counters and the closed flag's transitions.
        self._write_lock = threading.Lock()
        self._idle_readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False
        self._writer = self._connect()
        try:
            self._prepare_file()
            self._next_offsets = self._load_end_offsets()
        except BaseException:
            self._writer.close()
            raise

    # -- opening ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: autocommit; transactions are opened explicitly below.
            conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise LogError(f"cannot open broker log {self.path}: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LogError(f"broker log {self.path}: SQLite refused WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
        except sqlite3.Error as exc:
            conn.close()
            raise LogError(f"cannot open broker log {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare_file(self) -> None:
        try:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._writer.execute(statement)
                stored = dict(self._writer.execute("SELECT key, value FROM meta").fetchall())
                if not stored:
                    self._writer.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)",
                        [("format", _FORMAT), ("partitions", str(self.partitions))],
                    )
                self._writer.execute("COMMIT")
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LogError(f"broker log {self.path} is not usable: {exc}") from exc
        if stored and stored.get("format") != _FORMAT:
            raise LogError(
                f"broker log {self.path} has format {stored.get('format')!r}, expected {_FORMAT}"
            )
        if stored and stored.get("partitions") != str(self.partitions):
            raise LogError(
                f"broker log {self.path} was created with {stored.get('partitions')} partitions,"
                f" asked for {self.partitions}: changing the count would move keyed events to"
                " other partitions; use the stored count or a new file"
            )

    def _load_end_offsets(self) -> list[int]:
        next_offsets = [0] * self.partitions
        rows = self._writer.execute(
            "SELECT partition_id, MAX(record_offset) FROM records GROUP BY partition_id"
        ).fetchall()
        for partition, last in rows:
            next_offsets[partition] = last + 1
        return next_offsets

    # -- writing ----------------------------------------------------------------------------

    def append_many(
        self, items: Sequence[tuple[StoredEvent, Mapping[str, str] | None]]
    ) -> list[tuple[int, int]]:
        encoded = [self._encode(event, headers) for event, headers in items]
        if not encoded:
            self._check_open()
            return []
        with self._write_lock:
            self._check_open()
            next_offsets = list(self._next_offsets)
            positions: list[tuple[int, int]] = []
            rows = []
            for event, attributes, data, trace_headers in encoded:
                partition = self._chooser.choose(event)
                offset = next_offsets[partition]
                next_offsets[partition] = offset + 1
                positions.append((partition, offset))
                rows.append((partition, offset, attributes, data, trace_headers))
            try:
                if len(rows) == 1:
                    # In autocommit mode a single statement is its own transaction.
                    self._writer.execute(_INSERT, rows[0])
                else:
                    self._in_transaction(lambda: self._writer.executemany(_INSERT, rows))
            except sqlite3.IntegrityError as exc:
                raise LogError(
                    f"broker log {self.path}: offset already taken; is another process"
                    f" writing this file? ({exc})"
                ) from exc
            except sqlite3.Error as exc:
                raise LogError(f"broker log {self.path}: append failed: {exc}") from exc
            self._next_offsets = next_offsets
        return positions

    @staticmethod
    def _encode(
        event: StoredEvent, headers: Mapping[str, str] | None
    ) -> tuple[StoredEvent, bytes, bytes, bytes | None]:
        check_event(event)
        trace_headers = check_headers(headers)
        try:
            attributes = orjson.dumps(dict(event.attributes))
            encoded_headers = orjson.dumps(trace_headers) if trace_headers else None
        except orjson.JSONEncodeError as exc:
            # e.g. lone surrogates: they have no UTF-8 form, so they could never be sent on.
            raise ValueError(f"event attributes or headers are not valid text: {exc}") from exc
        return event, attributes, event.data, encoded_headers

    def commit(self, group: str, offsets: Mapping[int, int]) -> None:
        check_group(group)
        for partition, offset in offsets.items():
            check_partition(partition, self.partitions)
            check_offset(offset, "committed offset")
        rows = [(group, partition, offset) for partition, offset in offsets.items()]
        with self._write_lock:
            self._check_open()
            try:
                self._in_transaction(lambda: self._writer.executemany(_UPSERT_COMMIT, rows))
            except sqlite3.Error as exc:
                raise LogError(f"broker log {self.path}: commit failed: {exc}") from exc

    def _in_transaction(self, work: Callable[[], object]) -> None:
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            work()
        except BaseException:
            self._writer.execute("ROLLBACK")
            raise
        self._writer.execute("COMMIT")

    # -- reading ----------------------------------------------------------------------------

    def read(self, partition: int, offset: int, max_records: int) -> Sequence[Record]:
        check_partition(partition, self.partitions)
        check_offset(offset)
        check_max_records(max_records)
        if max_records == 0:
            self._check_open()
            return []
        with self._reader() as conn:
            try:
                rows = conn.execute(_SELECT, (partition, offset, max_records)).fetchall()
            except sqlite3.Error as exc:
                raise LogError(f"broker log {self.path}: read failed: {exc}") from exc
        return [
            Record(
                partition,
                record_offset,
                StoredEvent(orjson.loads(attributes), data),
                orjson.loads(headers) if headers is not None else {},
            )
            for record_offset, attributes, data, headers in rows
        ]

    def end_offset(self, partition: int) -> int:
        check_partition(partition, self.partitions)
        self._check_open()
        # Updated only after the records are committed, and read without the write lock so
        # polling the end never waits behind a write.
        return self._next_offsets[partition]

    def committed(self, group: str, partition: int) -> int | None:
        check_group(group)
        check_partition(partition, self.partitions)
        with self._reader() as conn:
            try:
                row = conn.execute(
                    "SELECT committed_offset FROM commits WHERE group_id = ? AND partition_id = ?",
                    (group, partition),
                ).fetchone()
            except sqlite3.Error as exc:
                raise LogError(f"broker log {self.path}: reading a commit failed: {exc}") from exc
        return None if row is None else int(row[0])

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        self._check_open()
        try:
            conn = self._idle_readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
        try:
            yield conn
        finally:
            with self._write_lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle_readers.put(conn)

    # -- closing ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error()

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            while True:
                try:
                    self._idle_readers.get_nowait().close()
                except queue.Empty:
                    break
            # Closed last: the last connection checkpoints the WAL into the main file.
            self._writer.close()

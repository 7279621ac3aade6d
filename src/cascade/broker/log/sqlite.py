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

Retention (``enforce_retention``, retention.py): records are dropped by age (``appended_at``,
stored with each record) and by size, from the oldest offset of each partition, never past the
lowest offset the Broker's Trigger groups committed, and never the newest record of a partition
(its end offset survives a reopen that way). Freed pages are reused by later appends, so the file
stops growing once retention removes as much as arrives; the WAL is truncated after checkpoints.

Reopening keeps records, offsets and commits. The partition count is stored in the file; opening
it with a different count is a ``LogError`` (keyed routing would change silently otherwise).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
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
from cascade.broker.log.retention import Pruned, RetentionPolicy

_FORMAT = "1"
_BUSY_TIMEOUT_S = 10.0
_WAL_SIZE_LIMIT = 64 * 1024 * 1024  # truncate the WAL back to this after a checkpoint
# What a record weighs for --retention-bytes: what it stores (SQLite's own overhead aside).
_SIZE = "length(attributes) + length(data) + COALESCE(length(headers), 0)"

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
    appended_at REAL NOT NULL DEFAULT 0,
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
    "INSERT INTO records (partition_id, record_offset, attributes, data, headers, appended_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
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
            self._bytes = self._load_sizes()
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
            conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
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
                columns = {row[1] for row in self._writer.execute("PRAGMA table_info(records)")}
                if "appended_at" not in columns:  # a log written before retention existed
                    self._writer.execute(
                        "ALTER TABLE records ADD COLUMN appended_at REAL NOT NULL DEFAULT 0"
                    )
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

    def _load_sizes(self) -> list[int]:
        sizes = [0] * self.partitions
        rows = self._writer.execute(
            f"SELECT partition_id, SUM({_SIZE}) FROM records GROUP BY partition_id"
        ).fetchall()
        for partition, total in rows:
            sizes[partition] = int(total or 0)
        return sizes

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
            added = [0] * self.partitions
            positions: list[tuple[int, int]] = []
            rows = []
            now = time.time()
            for event, attributes, data, trace_headers in encoded:
                partition = self._chooser.choose(event)
                offset = next_offsets[partition]
                next_offsets[partition] = offset + 1
                positions.append((partition, offset))
                rows.append((partition, offset, attributes, data, trace_headers, now))
                added[partition] += len(attributes) + len(data) + len(trace_headers or b"")
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
            self._bytes = [size + more for size, more in zip(self._bytes, added, strict=True)]
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

    # -- retention --------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """What the records weigh now (attributes, data and headers)."""
        return sum(self._bytes)

    def enforce_retention(
        self, policy: RetentionPolicy, groups: Collection[str], now: float | None = None
    ) -> Pruned:
        """Drop what ``policy`` lets go, below every group's committed offset (retention.py).

        ``groups``: the consumer groups of the Broker's Triggers; a group that has never
        committed a partition keeps all of it. Blocks appends while it deletes.
        """
        groups = set(groups)
        for group in groups:
            check_group(group)
        moment = time.time() if now is None else now
        per_partition = (
            None if policy.max_bytes is None else max(1, policy.max_bytes // self.partitions)
        )
        removed = removed_bytes = held_back = 0
        with self._write_lock:
            self._check_open()
            try:
                floors = self._floors(groups)
                for partition, floor in enumerate(floors):
                    cutoff, over = self._cutoff(partition, floor, policy, per_partition, moment)
                    held_back += over
                    if cutoff is None:
                        continue
                    count, size = self._writer.execute(
                        f"SELECT COUNT(*), COALESCE(SUM({_SIZE}), 0) FROM records"
                        " WHERE partition_id = ? AND record_offset < ?",
                        (partition, cutoff),
                    ).fetchone()
                    self._writer.execute(
                        "DELETE FROM records WHERE partition_id = ? AND record_offset < ?",
                        (partition, cutoff),
                    )
                    removed += count
                    removed_bytes += size
                    self._bytes[partition] -= size
            except sqlite3.Error as exc:
                raise LogError(f"broker log {self.path}: retention failed: {exc}") from exc
            kept = sum(self._bytes)
        return Pruned(records=removed, bytes=removed_bytes, kept_bytes=kept, held_back=held_back)

    def _floors(self, groups: Collection[str]) -> list[int]:
        """Per partition, the offset below which every group is done, and the newest record
        is never below it."""
        floors = [max(0, end - 1) for end in self._next_offsets]
        if not groups:
            return floors
        marks = ",".join("?" * len(groups))
        rows = self._writer.execute(
            f"SELECT partition_id, MIN(committed_offset), COUNT(*) FROM commits"
            f" WHERE group_id IN ({marks}) GROUP BY partition_id",
            list(groups),
        ).fetchall()
        committed = {partition: (low, count) for partition, low, count in rows}
        for partition in range(self.partitions):
            low, count = committed.get(partition, (0, 0))
            # A group without a commit here has not started on this partition: keep it all.
            floors[partition] = min(floors[partition], low if count == len(groups) else 0)
        return floors

    def _cutoff(
        self,
        partition: int,
        floor: int,
        policy: RetentionPolicy,
        max_bytes: int | None,
        now: float,
    ) -> tuple[int | None, int]:
        """The first offset of ``partition`` to keep (None: drop nothing), and how many records
        over a limit stay because they are at or above ``floor``."""
        cutoff = 0
        if policy.max_age_seconds is not None:
            row = self._writer.execute(
                "SELECT record_offset FROM records WHERE partition_id = ? AND appended_at >= ?"
                " ORDER BY record_offset LIMIT 1",
                (partition, now - policy.max_age_seconds),
            ).fetchone()
            cutoff = self._next_offsets[partition] if row is None else int(row[0])
        excess = 0 if max_bytes is None else self._bytes[partition] - max_bytes
        if excess > 0:
            dropped = 0
            for offset, size in self._writer.execute(
                f"SELECT record_offset, {_SIZE} FROM records WHERE partition_id = ?"
                " ORDER BY record_offset",
                (partition,),
            ):
                if dropped >= excess:
                    cutoff = max(cutoff, int(offset))
                    break
                dropped += size
            else:
                cutoff = self._next_offsets[partition]
        wanted = cutoff
        cutoff = min(cutoff, floor)
        held_back = 0
        if wanted > cutoff:
            held_back = self._writer.execute(
                "SELECT COUNT(*) FROM records WHERE partition_id = ?"
                " AND record_offset >= ? AND record_offset < ?",
                (partition, cutoff, wanted),
            ).fetchone()[0]
        first = self._writer.execute(
            "SELECT MIN(record_offset) FROM records WHERE partition_id = ?", (partition,)
        ).fetchone()[0]
        if first is None or cutoff <= first:
            return None, held_back
        return cutoff, held_back

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

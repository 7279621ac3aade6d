"""Dedupe deliveries on (source, id): effects once, the stored reply for every duplicate.

Inside the event's transaction the runtime first *claims* the event by inserting its dedupe
row (``INSERT ... ON CONFLICT DO NOTHING RETURNING``). Whoever inserts the row owns the
event: the handler runs, the reply is written into the row, and handler effects, row and
reply commit together. A concurrent delivery of the same event blocks on that row
(PostgreSQL's unique index; SQLite's single writer) until the owner finishes: after a commit
it finds the row and answers with the stored reply; after a rollback (Retry, DeadLetter,
error) its own insert succeeds and it runs the handler itself.

The statements are plain SQL, valid on SQLite (>= 3.35) and PostgreSQL alike, and run on
the DBAPI cursor of the event's connection: going through SQLAlchemy's execution context
cost more per event than the statements themselves (issue 13's profile).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import orjson
from sqlalchemy import Connection, text

from cascade.store import EventTransaction

__all__ = ["Deduper", "StoredReply"]

# Positional "?" placeholders, rewritten to "%s" for psycopg (_Statements).
_CLAIM: Final = (
    "INSERT INTO cascade_dedupe"
    " (function, source, event_id, status, headers, body, created_at)"
    " VALUES (?, ?, ?, 0, '{}', ?, ?)"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)
_RETURNING: Final = " RETURNING event_id"
_STORED: Final = (
    "SELECT status, headers, body FROM cascade_dedupe"
    " WHERE function = ? AND source = ? AND event_id = ?"
)
_RECORD: Final = (
    "UPDATE cascade_dedupe SET status = ?, headers = ?, body = ?"
    " WHERE function = ? AND source = ? AND event_id = ?"
)
_PURGE: Final = text(
    "DELETE FROM cascade_dedupe WHERE function = :function AND created_at < :cutoff"
)


@dataclass(frozen=True, slots=True)
class StoredReply:
    """The HTTP answer given the first time; re-sent as is for duplicates."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Deduper:
    """Claims and records events for one function."""

    def __init__(self, function: str, dialect: str, ttl_seconds: float) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"idempotency needs SQLite or PostgreSQL, not {dialect!r}")
        self.function = function
        self.ttl_seconds = ttl_seconds
        self._next_purge = 0.0
        placeholder = "?" if dialect == "sqlite" else "%s"
        self._claim, self._stored, self._record = (
            sql.replace("?", placeholder) for sql in (_CLAIM, _STORED, _RECORD)
        )
        # SQLite's rowcount is exact; psycopg's is not (-1 here), so it fetches RETURNING.
        self._by_rowcount = dialect == "sqlite"
        if self._by_rowcount:
            self._claim = self._claim.removesuffix(_RETURNING)

    def claim(
        self, transaction: EventTransaction, source: str, event_id: str
    ) -> StoredReply | None:
        """Own the event (None) or get the reply stored by the delivery that owned it."""
        parameters = (self.function, source, event_id, b"", time.time())
        if self._by_rowcount:
            if transaction.inserted(self._claim, parameters):
                return None
        elif transaction.fetch_one(self._claim, parameters) is not None:
            return None
        status, headers, body = transaction.fetch_one(
            self._stored, (self.function, source, event_id)
        )
        return StoredReply(status, orjson.loads(headers), bytes(body))

    def record_and_commit(
        self, transaction: EventTransaction, source: str, event_id: str, reply: StoredReply
    ) -> None:
        """Store the answer in the claimed row and commit it with the handler's effects
        (on PostgreSQL, without a Session, ``COMMIT`` goes in the same round trip)."""
        transaction.fetch_one_and_commit(
            self._record,
            (
                reply.status,
                orjson.dumps(dict(reply.headers)).decode(),
                reply.body,
                self.function,
                source,
                event_id,
            ),
        )

    def purge_due(self, now: float | None = None) -> bool:
        """True at most once per ``ttl/100`` (>= 1 min): time to drop expired records."""
        now = time.time() if now is None else now
        if now < self._next_purge:
            return False
        self._next_purge = now + max(60.0, self.ttl_seconds / 100)
        return True

    def purge(self, connection: Connection, now: float | None = None) -> int:
        """Delete this function's records older than the TTL; returns how many."""
        cutoff = (time.time() if now is None else now) - self.ttl_seconds
        result = connection.execute(_PURGE, {"function": self.function, "cutoff": cutoff})
        return int(result.rowcount)

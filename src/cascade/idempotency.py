"""Dedupe deliveries on (source, id): effects once, the stored reply for every duplicate.

Inside the event's transaction the runtime first *claims* the event by inserting its dedupe
row (``INSERT ... ON CONFLICT DO NOTHING``). Whoever inserts the row owns the event: the
handler runs, the reply is written into the row, and handler effects, row and reply commit
together. A concurrent delivery of the same event blocks on that row (PostgreSQL's unique
index; SQLite's single writer) until the owner finishes: after a commit it finds the row and
answers with the stored reply; after a rollback (Retry, DeadLetter, error) its own insert
succeeds and it runs the handler itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cascade.store import dedupe_table

__all__ = ["Deduper", "StoredReply"]


@dataclass(frozen=True, slots=True)
class StoredReply:
    """The HTTP answer given the first time; re-sent as is for duplicates."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Deduper:
    """Claims and records events for one function in one dialect."""

    def __init__(self, function: str, dialect: str, ttl_seconds: float) -> None:
        self.function = function
        self.ttl_seconds = ttl_seconds
        self._insert: postgresql.Insert | sqlite.Insert
        if dialect == "postgresql":
            self._insert = postgresql.insert(dedupe_table)
        elif dialect == "sqlite":
            self._insert = sqlite.insert(dedupe_table)
        else:
            raise ValueError(f"idempotency needs SQLite or PostgreSQL, not {dialect!r}")
        self._next_purge = 0.0

    def claim(self, session: Session, source: str, event_id: str) -> StoredReply | None:
        """Own the event (None) or get the reply stored by the delivery that owned it."""
        claimed = session.execute(
            self._insert.values(
                function=self.function,
                source=source,
                event_id=event_id,
                status=0,
                headers="{}",
                body=b"",
                created_at=time.time(),
            )
            .on_conflict_do_nothing()
            # RETURNING, not rowcount: drivers disagree on rowcount here (psycopg gives -1).
            .returning(dedupe_table.c.event_id)
        )
        if claimed.first() is not None:
            return None
        row = session.execute(
            select(dedupe_table.c.status, dedupe_table.c.headers, dedupe_table.c.body).where(
                dedupe_table.c.function == self.function,
                dedupe_table.c.source == source,
                dedupe_table.c.event_id == event_id,
            )
        ).one()
        return StoredReply(row.status, orjson.loads(row.headers), bytes(row.body))

    def record(self, session: Session, source: str, event_id: str, reply: StoredReply) -> None:
        """Store the answer in the claimed row (same transaction as the handler's effects)."""
        session.execute(
            update(dedupe_table)
            .where(
                dedupe_table.c.function == self.function,
                dedupe_table.c.source == source,
                dedupe_table.c.event_id == event_id,
            )
            .values(
                status=reply.status,
                headers=orjson.dumps(dict(reply.headers)).decode(),
                body=reply.body,
            )
        )

    def purge_due(self, now: float | None = None) -> bool:
        """True at most once per ``ttl/100`` (>= 1 min): time to drop expired records."""
        now = time.time() if now is None else now
        if now < self._next_purge:
            return False
        self._next_purge = now + max(60.0, self.ttl_seconds / 100)
        return True

    def purge(self, session: Session, now: float | None = None) -> int:
        """Delete this function's records older than the TTL; returns how many."""
        cutoff = (time.time() if now is None else now) - self.ttl_seconds
        result = session.execute(
            delete(dedupe_table).where(
                dedupe_table.c.function == self.function, dedupe_table.c.created_at < cutoff
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

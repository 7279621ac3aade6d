"""One pooled SQLite connection per thread, checked out once and kept for its events.

Checking a connection out of SQLAlchemy's pool and back in (its queue, the fairy, the reset
on return) cost about a third of what the dedupe adds per event, under gunicorn's threads
(issue 13's profile). A gthread worker's threads live as long as the worker, so each keeps
the connection it first checked out: it stays a pooled connection (a Session can still be
wrapped around it), it is only not returned between events.

Only for SQLite files, where a connection is a file handle: a PostgreSQL connection is a
server process and goes back to the pool after every event.
"""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

__all__ = ["ThreadConnections"]


class ThreadConnections:
    """Hands each thread its own connection from ``engine``'s pool, the same one each time."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._held: set[PoolProxiedConnection] = set()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def acquire(self) -> PoolProxiedConnection:
        """This thread's connection; a new one when it has none or its last was invalidated."""
        if os.getpid() != self._pid:
            # Forked after use: the parent's connections must not be shared. Only forget
            # them; closing would touch the parent's SQLite handles.
            self._local, self._held, self._pid = threading.local(), set(), os.getpid()
        raw: PoolProxiedConnection | None = getattr(self._local, "raw", None)
        if raw is not None and raw.is_valid:
            return raw
        if raw is not None:  # invalidated: the pool has already dropped it
            with self._lock:
                self._held.discard(raw)
        raw = self._engine.raw_connection()
        with self._lock:
            self._held.add(raw)
        self._local.raw = raw
        return raw

    def release_all(self) -> None:
        """Give every held connection back to the pool (before ``engine.dispose()``)."""
        with self._lock:
            held, self._held = self._held, set()
            self._local = threading.local()
        for raw in held:
            raw.close()

"""Fault injection for the payment gateway, so retries and the dead-letter sink can be seen.

Settings (:class:`Faults`): ``rate`` (share of gateway calls that fail, 0..1), ``mode``
(``error``: the handler raises Retry, answered 503; ``hang``: it sleeps ``hang_seconds`` before
answering, longer than the payment Trigger's timeout, so the broker gives up and retries),
``seed``. Defaults come from ``PAYMENT_FAULT_RATE``, ``PAYMENT_FAULT_MODE``,
``PAYMENT_HANG_SECONDS``, ``PAYMENT_FAULT_SEED``; ``PUT /faults`` overrides them at runtime in
the function's store, so every worker sees the change.

Which calls fail is deterministic: delivery ``n`` of an event fails when
``sha256(seed, source, id, n) < rate`` (:func:`roll`). ``n`` is counted per event by
:class:`AttemptLedger`, in a transaction of its own, because a Retry rolls back everything the
handler wrote. With the same seed, the same events fail on the same attempts, run after run.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    delete,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import NullPool, StaticPool

__all__ = ["AttemptLedger", "FaultMode", "Faults", "ledger_for", "roll"]

FaultMode = Literal["error", "hang"]
LEDGER_TTL_SECONDS = 24 * 3600.0
SEED_MAX = 2**31 - 1


class Faults(BaseModel):
    """The fault-injection setting (the body of ``PUT /faults``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of gateway calls that fail."
    )
    mode: FaultMode = Field(default="error", description="error: answer 503; hang: sleep first.")
    hang_seconds: float = Field(
        default=5.0,
        gt=0.0,
        le=30.0,  # within gunicorn's worker timeout (CASCADE_TIMEOUT, 60 s)
        description="How long a hang lasts: longer than the Trigger's timeout.",
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=SEED_MAX,  # the payment_faults.seed column is an INTEGER (32-bit on PostgreSQL)
        description="Changes which events fail; same seed, same failures.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Faults:
        """Defaults from ``PAYMENT_FAULT_*``; ValueError names the variable that is wrong."""
        env = os.environ if environ is None else environ
        names = {
            "rate": "PAYMENT_FAULT_RATE",
            "mode": "PAYMENT_FAULT_MODE",
            "hang_seconds": "PAYMENT_HANG_SECONDS",
            "seed": "PAYMENT_FAULT_SEED",
        }
        given = {f: env[var].strip() for f, var in names.items() if env.get(var, "").strip()}
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = str(first["loc"][0]) if first["loc"] else "rate"
            raise ValueError(
                f"{names.get(field, field)}={given.get(field)!r}: {first['msg']}"
            ) from None

    def decides_fault(self, source: str, event_id: str, attempt: int) -> bool:
        return self.rate > 0 and roll(self.seed, source, event_id, attempt) < self.rate


def roll(seed: int, source: str, event_id: str, attempt: int) -> float:
    """A number in [0, 1) that depends only on its arguments."""
    digest = hashlib.sha256(f"{seed}\n{source}\n{event_id}\n{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


_metadata = MetaData()
_attempts = Table(
    "payment_attempts",
    _metadata,
    Column("source", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),
)


class AttemptLedger:
    """Counts deliveries per event, committed at once, outside the event's transaction.

    PostgreSQL: the function's own database, on a connection of its own. SQLite: a file next
    to the store's (``<name>-attempts.sqlite3``), because the event's transaction holds the
    store file's only write lock while the handler runs.
    """

    def __init__(self, store_engine: Engine) -> None:
        url = store_engine.url
        if url.get_backend_name() != "sqlite":
            self.engine = store_engine
        elif url.database in (None, "", ":memory:"):
            self.engine = create_engine("sqlite://", poolclass=StaticPool)
        else:
            path = Path(url.database)
            ledger = path.with_name(f"{path.stem}-attempts.sqlite3")
            self.engine = create_engine(
                f"sqlite:///{ledger}", poolclass=NullPool, connect_args={"timeout": 30.0}
            )
        _metadata.create_all(self.engine)
        dialect = self.engine.dialect.name
        self._insert = (postgresql if dialect == "postgresql" else sqlite).insert

    def next_attempt(self, source: str, event_id: str) -> int:
        """1 for the first delivery of (source, id), 2 for the second, ..."""
        now = time.time()
        statement = (
            self._insert(_attempts)
            .values(source=source, event_id=event_id, attempts=1, updated_at=now)
            .on_conflict_do_update(
                index_elements=[_attempts.c.source, _attempts.c.event_id],
                set_={"attempts": _attempts.c.attempts + 1, "updated_at": now},
            )
            .returning(_attempts.c.attempts)
        )
        with self.engine.begin() as connection:
            attempt = int(connection.execute(statement).scalar_one())
            if attempt == 1:  # housekeeping once per new event is plenty
                connection.execute(
                    delete(_attempts).where(_attempts.c.updated_at < now - LEDGER_TTL_SECONDS)
                )
        return attempt


_ledgers: dict[str, AttemptLedger] = {}
_ledgers_lock = threading.Lock()


def ledger_for(store_engine: Engine) -> AttemptLedger:
    """The process's ledger for this store (created, with its table, on first use)."""
    key = store_engine.url.render_as_string(hide_password=False)
    with _ledgers_lock:
        ledger = _ledgers.get(key)
        if ledger is None:
            ledger = _ledgers[key] = AttemptLedger(store_engine)
        return ledger

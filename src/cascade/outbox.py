"""Transactional publishing: ``ctx.publish(event)`` writes the event into the runtime's outbox
table in the handler's (or route's) own store transaction; a relay sends it to ``K_SINK``
after the commit.

- **Together or not at all.** The event commits with the handler's effects (and, for a
  delivery, with its dedupe record and stored reply): a rollback (Retry, DeadLetter, an
  error, a duplicate) publishes nothing; a commit publishes at least once.
- **Nobody waits on K_SINK.** The request answers after its commit; the relay is woken then
  and sends from its own thread.
- **One relay per worker, rows claimed.** Every gunicorn worker (and every pod sharing a
  PostgreSQL database) runs a relay. A relay claims rows for a lease in one short transaction
  (SQLite's write lock; a PostgreSQL advisory lock per function), so two relays never send the
  same row at once and no leader has to be elected; a dead worker's claims expire.
- **Order per partitionkey.** Rows are sent in commit order; a key whose oldest row is
  claimed elsewhere, waiting for its backoff, or failed in this pass is skipped as a whole, so
  a later event never overtakes an earlier one with the same key. Keyless rows are independent.
- **At least once, bounded.** One attempt per row and pass, each bounded by
  ``CASCADE_PUBLISH_TIMEOUT``; a retryable failure (no answer, 5xx, 404/408/409/429) backs the
  row off exponentially (``CASCADE_PUBLISH_BACKOFF`` doubling up to ``..._BACKOFF_MAX``) and is
  tried again until the sink takes it, whatever the outage's length. A sink that refuses the
  event for good (another 4xx) parks the row (``failed_at``, ``last_error``, counted in
  ``cascade_outbox_failed``) instead of blocking its key or vanishing. The event keeps its id
  on every attempt, so a copy sent twice (a crash between send and delete) is a duplicate
  consumers drop.
- **One trace.** The row keeps the trace context of the span that published it; the relay's
  ``send <type>`` span is its child, so an order's trace stays one trace.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson
from opentelemetry import context as otel_context
from opentelemetry import propagate
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, bindparam, text
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from cascade.events import Event
from cascade.publish import Publisher, PublishError, as_reply, is_retryable
from cascade.reply import Reply
from cascade.store import READ_ONLY, Store

__all__ = ["FlushResult", "Outbox", "OutboxCollector", "Relay"]

_log = logging.getLogger("cascade.outbox")

_INSERT: Final = text(
    "INSERT INTO cascade_outbox (function, event_id, partitionkey, attributes, data, trace,"
    " created_at, attempts, next_attempt_at)"
    " VALUES (:function, :event_id, :partitionkey, :attributes, :data, :trace, :now, 0, :now)"
)
_SCAN: Final = text(
    "SELECT seq, partitionkey, claimed_by, claimed_until, next_attempt_at FROM cascade_outbox"
    " WHERE function = :function AND failed_at IS NULL ORDER BY seq LIMIT :scan"
)
_CLAIM: Final = text(
    "UPDATE cascade_outbox SET claimed_by = :me, claimed_until = :until WHERE seq IN :seqs"
).bindparams(bindparam("seqs", expanding=True))
_CLAIMED: Final = text(
    "SELECT seq, event_id, partitionkey, attributes, data, trace, attempts FROM cascade_outbox"
    " WHERE seq IN :seqs AND claimed_by = :me ORDER BY seq"
).bindparams(bindparam("seqs", expanding=True))
_SENT: Final = text("DELETE FROM cascade_outbox WHERE seq = :seq AND claimed_by = :me")
_BACK_OFF: Final = text(
    "UPDATE cascade_outbox SET attempts = attempts + 1, next_attempt_at = :at,"
    " last_error = :error, claimed_by = NULL, claimed_until = NULL"
    " WHERE seq = :seq AND claimed_by = :me"
)
_PARK: Final = text(
    "UPDATE cascade_outbox SET attempts = attempts + 1, failed_at = :now, last_error = :error,"
    " claimed_by = NULL, claimed_until = NULL WHERE seq = :seq AND claimed_by = :me"
)
_RELEASE: Final = text(
    "UPDATE cascade_outbox SET claimed_by = NULL, claimed_until = NULL"
    " WHERE claimed_by = :me AND seq IN :seqs"
).bindparams(bindparam("seqs", expanding=True))
_PENDING: Final = text(
    "SELECT count(*) FROM cascade_outbox WHERE function = :function AND failed_at IS NULL"
)
_PENDING_FOR_KEY: Final = text(
    "SELECT count(*) FROM cascade_outbox"
    " WHERE function = :function AND failed_at IS NULL AND partitionkey = :partitionkey"
)
_FAILED: Final = text(
    "SELECT count(*) FROM cascade_outbox WHERE function = :function AND failed_at IS NOT NULL"
)
_LOCK_PG: Final = text("SELECT pg_advisory_xact_lock(:key)")

SCAN_ROWS: Final = 1000  # oldest pending rows looked at per claim
BATCH_ROWS: Final = 100  # rows claimed per pass


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one relay pass did: events sent, events that failed (and wait, or are parked),
    and how many still wait."""

    published: int
    failed: int
    pending: int


@dataclass(frozen=True, slots=True)
class _Row:
    seq: int
    event_id: str
    key: str
    attributes: dict[str, str]
    data: bytes
    trace: dict[str, str] | None
    attempts: int


class Outbox:
    """A function's outbox: ``ctx.publish`` writes into it inside the caller's transaction;
    ``ctx.outbox`` reads it (``pending``, ``failed``) and runs a relay pass (``flush``)."""

    def __init__(self, function: str, store: Store, publisher: Publisher) -> None:
        self.function = function
        self.store = store
        self._publisher = publisher  # builds the envelope (source, K_CE_OVERRIDES) only
        self._wake: Callable[[], None] = lambda: None
        self._flush: Callable[[], FlushResult] | None = None

    def attach(self, wake: Callable[[], None], flush: Callable[[], FlushResult]) -> None:
        """The relay: ``wake`` is called after each commit that wrote into the outbox."""
        self._wake, self._flush = wake, flush

    def flush(self) -> FlushResult:
        """Run one relay pass now (what is due; backoffs are kept). Without ``K_SINK``
        nothing is sent and the events keep waiting."""
        if self._flush is None:
            pending = self.pending()
            return FlushResult(0, 0, pending)
        return self._flush()

    def add(
        self,
        session: Session,
        event: Event | Reply,
        *,
        subject: str | None = None,
        partitionkey: str | None = None,
        extensions: dict[str, str] | None = None,
    ) -> str:
        """Write ``event`` in ``session``'s transaction; returns its CloudEvents id."""
        reply = as_reply(event, subject=subject, partitionkey=partitionkey, extensions=extensions)
        attributes = self._publisher.attributes_for(reply, event_id=str(uuid.uuid4()))
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the publishing span: the relay's send span is its child
        data = reply.event.to_json_bytes()
        session.execute(
            _INSERT,
            {
                "function": self.function,
                "event_id": attributes["id"],
                "partitionkey": attributes.get("partitionkey"),
                "attributes": orjson.dumps(attributes).decode(),
                "data": data,
                "trace": orjson.dumps(carrier).decode() if carrier else None,
                "now": time.time(),
            },
        )
        if not sa_event.contains(session, "after_commit", self._after_commit):
            sa_event.listen(session, "after_commit", self._after_commit)
        return attributes["id"]

    def _after_commit(self, _session: Session) -> None:
        self._wake()

    def pending(self, partitionkey: str | None = None) -> int:
        """Events waiting to be sent (all, or those with ``partitionkey``); parked ones aside."""
        with self._read() as connection:
            if partitionkey is None:
                return int(connection.execute(_PENDING, {"function": self.function}).scalar_one())
            return int(
                connection.execute(
                    _PENDING_FOR_KEY, {"function": self.function, "partitionkey": partitionkey}
                ).scalar_one()
            )

    def failed(self) -> int:
        """Events the sink refused for good, kept with their reason."""
        with self._read() as connection:
            return int(connection.execute(_FAILED, {"function": self.function}).scalar_one())

    def _read(self) -> Connection:
        return self.store.engine.connect().execution_options(**{READ_ONLY: True})


class Relay:
    """Sends one function's outbox rows to K_SINK from a thread of this process."""

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        *,
        backoff_seconds: float,
        backoff_max_seconds: float,
        poll_seconds: float,
    ) -> None:
        self.outbox = outbox
        self.publisher = publisher  # one attempt per send: the relay does its own backoff
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.poll_seconds = poll_seconds
        # A claim outlives any send it covers: rows are only sent while their lease has more
        # than one publish timeout left. Short, because a killed worker's claims hold its
        # rows back until they expire.
        self.lease_seconds = 2 * publisher.timeout_seconds + 5.0
        self.me = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pass_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # When the earliest row waiting for a backoff or another relay's lease is due.
        self._next_due: float | None = None
        self._lock_key = int.from_bytes(
            hashlib.sha256(f"cascade_outbox:{outbox.function}".encode()).digest()[:8],
            "big",
            signed=True,
        )
        outbox.attach(self.wake, self.flush)

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        """Start the relay thread (at app start, in each worker after fork)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"cascade-outbox-{self.outbox.function}", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread; a send in flight gets up to one publish timeout to finish."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.publisher.timeout_seconds + 1 if timeout is None else timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        self._wake.set()  # a first pass at start: rows left by an earlier process
        while not self._stop.is_set():
            wait = self.poll_seconds
            if self._next_due is not None:
                wait = max(0.0, min(wait, self._next_due - time.time()))
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                while not self._stop.is_set():
                    result = self.flush()
                    if result.failed or not result.published:
                        break  # nothing more now: wait for a commit, the poll or a backoff
            except Exception:  # the thread must outlive any one bad pass (store down, ...)
                _log.exception("outbox relay pass failed; trying again in %.1fs", self.poll_seconds)

    # ------------------------------------------------------------------ one pass

    def flush(self) -> FlushResult:
        """One pass: claim what is due, send it in order, record each outcome."""
        with self._pass_lock:
            rows, until = self._claim()
            published = failed = 0
            try:
                published, failed = self._send_all(rows, until)
            finally:
                self._release(rows)
        return FlushResult(published, failed, self.outbox.pending())

    def _claim(self) -> tuple[list[_Row], float]:
        """Claim what is due, for a lease; returns the rows and when the lease ends."""
        now = time.time()
        until = now + self.lease_seconds
        with self.outbox.store.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(_LOCK_PG, {"key": self._lock_key})
            scanned = connection.execute(
                _SCAN, {"function": self.outbox.function, "scan": SCAN_ROWS}
            ).all()
            seqs, self._next_due = _due(scanned, now, self.me)
            if not seqs:
                return [], until
            connection.execute(_CLAIM, {"me": self.me, "until": until, "seqs": seqs})
            claimed = connection.execute(_CLAIMED, {"seqs": seqs, "me": self.me}).all()
        rows = [
            _Row(
                seq=row.seq,
                event_id=row.event_id,
                key=row.partitionkey if row.partitionkey is not None else f"#{row.seq}",
                attributes=orjson.loads(row.attributes),
                data=bytes(row.data),
                trace=orjson.loads(row.trace) if row.trace else None,
                attempts=row.attempts,
            )
            for row in claimed
        ]
        return rows, until

    def _send_all(self, rows: list[_Row], until: float) -> tuple[int, int]:
        published = failed = 0
        held: set[str] = set()  # keys with a row that failed in this pass
        for row in rows:
            if self._stop.is_set() and published + failed > 0:
                break
            if time.time() + self.publisher.timeout_seconds >= until:
                break  # the lease would run out mid-send: leave the rest to the next pass
            if row.key in held:
                continue
            error = self._send(row)
            if error is None:
                self._record(_SENT, {"seq": row.seq, "me": self.me})
                published += 1
                continue
            failed += 1
            if is_retryable(error):
                held.add(row.key)  # its later events wait behind it
                delay = self._backoff(row.attempts + 1)
                _log.warning(
                    "outbox event %s (%s) not sent, attempt %d (%s); next try in %.2fs",
                    row.event_id,
                    row.attributes.get("type"),
                    row.attempts + 1,
                    error,
                    delay,
                )
                at = time.time() + delay
                self._next_due = at if self._next_due is None else min(self._next_due, at)
                if threading.current_thread() is not self._thread:
                    self._wake.set()  # a flush from a request: the thread re-plans its wait
                self._record(
                    _BACK_OFF, {"seq": row.seq, "me": self.me, "at": at, "error": str(error)}
                )
                if error.status is None:
                    break  # no answer at all: the sink is down, the rest would wait the same
            else:
                _log.error(
                    "outbox event %s (%s) refused by the sink for good, parked with the reason: %s",
                    row.event_id,
                    row.attributes.get("type"),
                    error,
                )
                self._record(
                    _PARK, {"seq": row.seq, "me": self.me, "now": time.time(), "error": str(error)}
                )
        return published, failed

    def _send(self, row: _Row) -> PublishError | None:
        parent = propagate.extract(row.trace) if row.trace else None
        token = otel_context.attach(parent) if parent is not None else None
        try:
            self.publisher.send(row.attributes, row.data)
        except PublishError as exc:
            return exc
        finally:
            if token is not None:
                otel_context.detach(token)
        return None

    def _record(self, statement: Any, values: dict[str, Any]) -> None:
        with self.outbox.store.engine.begin() as connection:
            connection.execute(statement, values)

    def _release(self, rows: Iterable[_Row]) -> None:
        seqs = [row.seq for row in rows]
        if seqs:
            try:
                self._record(_RELEASE, {"me": self.me, "seqs": seqs})
            except Exception:  # the lease expires on its own
                _log.exception("could not release outbox claims")

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def _due(scanned: Iterable[Any], now: float, me: str) -> tuple[list[int], float | None]:
    """The rows to claim, oldest first, and when the earliest skipped row is due: a key is
    skipped from its first row that is claimed by another live relay or waiting for its
    backoff, so its order holds."""
    taken: list[int] = []
    blocked: set[str] = set()
    next_due: float | None = None
    for row in scanned:
        key = row.partitionkey if row.partitionkey is not None else f"#{row.seq}"
        if key in blocked:
            continue
        claimed_elsewhere = (
            row.claimed_by is not None and row.claimed_by != me and (row.claimed_until or 0) > now
        )
        if claimed_elsewhere or row.next_attempt_at > now:
            blocked.add(key)
            due = (
                max(row.next_attempt_at, row.claimed_until or 0)
                if claimed_elsewhere
                else row.next_attempt_at
            )
            next_due = due if next_due is None else min(next_due, due)
            continue
        taken.append(row.seq)
        if len(taken) == BATCH_ROWS:
            break
    return taken, next_due


class OutboxCollector(Collector):
    """``cascade_outbox_pending`` and ``cascade_outbox_failed``, read from the store at each
    scrape (so every worker reports the same numbers)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def collect(self) -> Iterator[Metric]:
        try:
            pending, failed = self.outbox.pending(), self.outbox.failed()
        except Exception:  # a scrape must not fail because the store is briefly unavailable
            _log.exception("cannot read the outbox for metrics")
            return
        for name, documentation, value in (
            ("cascade_outbox_pending", "Events committed and not yet sent to K_SINK.", pending),
            (
                "cascade_outbox_failed",
                "Events K_SINK refused for good, kept with the reason.",
                failed,
            ),
        ):
            family = GaugeMetricFamily(name, documentation, labels=["function"])
            family.add_metric([self.outbox.function], float(value))
            yield family

"""The transactional outbox of the order API: an order and its ``order.created`` commit together,
and the event is published afterwards, as often as it takes.

``POST /orders`` writes the order and an :class:`~functions.order.models.OutboxEvent` in one
transaction, commits, then asks the relay to publish that event at once. When the broker is
unreachable the order still exists (201) and its event stays pending; the relay's thread
retries pending events every few seconds (and ``POST /outbox/flush`` forces a pass). An event
keeps its CloudEvents id across attempts, so if it is published twice (a crash between the
publish and marking it published, or two workers racing) every consumer drops the second copy
as a duplicate (source, id).

Nothing is held open while publishing: rows are read and marked in short transactions of their
own, so a slow broker never blocks the store.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import propagate
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session

from cascade import Publisher, PublishError
from cascade.events import registry
from functions.order.models import OutboxEvent

__all__ = ["FlushResult", "OutboxRelay", "relay_for"]

_log = logging.getLogger("functions.order.outbox")


@dataclass(frozen=True)
class FlushResult:
    published: int
    failed: int
    pending: int


class OutboxRelay:
    """Publishes pending outbox events of one store through one publisher."""

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        *,
        interval_seconds: float = 2.0,
        grace_seconds: float = 5.0,
        batch: int = 100,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.interval_seconds = interval_seconds
        # The thread leaves fresh rows to the request that wrote them.
        self.grace_seconds = grace_seconds
        self.batch = batch
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ publishing

    def send(self, event_id: str) -> bool:
        """Publish one pending event now; True when it is (or already was) published."""
        with Session(self.engine) as session:
            row = session.get(OutboxEvent, event_id)
            if row is None:
                raise LookupError(f"no outbox event {event_id!r}")
            if row.published_at is not None:
                return True
            session.expunge(row)
        return self._publish(row)

    def flush(self, min_age_seconds: float = 0.0) -> FlushResult:
        """Publish pending events older than ``min_age_seconds``; stops at the first failure."""
        cutoff = time.time() - min_age_seconds
        with Session(self.engine) as session:
            rows = list(
                session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.published_at.is_(None), OutboxEvent.created_at <= cutoff)
                    .order_by(OutboxEvent.created_at, OutboxEvent.event_id)
                    .limit(self.batch)
                )
            )
            session.expunge_all()
        published = failed = 0
        for row in rows:
            if not self._publish(row):
                failed += 1
                break  # the sink is down: the next pass tries again
            published += 1
        return FlushResult(published, failed, self.pending())

    def pending(self) -> int:
        with Session(self.engine) as session:
            count = session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None))
            )
        return int(count or 0)

    def _publish(self, row: OutboxEvent) -> bool:
        model = registry.get(row.type)
        if model is None:
            raise LookupError(f"outbox event {row.event_id} has unknown type {row.type!r}")
        event_model = model.model_validate_json(row.data)
        # Publish in the trace of the request that placed the order, even from the thread.
        parent = propagate.extract({"traceparent": row.traceparent}) if row.traceparent else None
        token = otel_context.attach(parent) if parent is not None else None
        try:
            self.publisher.publish(
                event_model,
                event_id=row.event_id,
                partitionkey=row.order_id,
                subject=row.order_id,
            )
        except PublishError as exc:
            _log.warning(
                "could not publish %s %s for order %s (kept in the outbox): %s",
                row.type,
                row.event_id,
                row.order_id,
                exc,
            )
            self._mark(row.event_id, error=str(exc))
            return False
        finally:
            if token is not None:
                otel_context.detach(token)
        self._mark(row.event_id, error=None)
        return True

    def _mark(self, event_id: str, *, error: str | None) -> None:
        values: dict[str, object] = {"attempts": OutboxEvent.attempts + 1, "last_error": error}
        if error is None:
            values["published_at"] = time.time()
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.event_id == event_id, OutboxEvent.published_at.is_(None))
                .values(values)
            )

    # ------------------------------------------------------------------ background thread

    def ensure_running(self) -> None:
        """Start the retry thread of this process (after a fork, a new one)."""
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._stop.is_set():
                return
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="order-outbox-relay", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                result = self.flush(self.grace_seconds)
                if result.published:
                    _log.info("published %d pending outbox events", result.published)
            except Exception:  # the thread must outlive any one bad pass
                _log.exception("outbox relay pass failed")

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)


_relays: dict[int, OutboxRelay] = {}
_relays_lock = threading.Lock()


def relay_for(engine: Engine, publisher: Publisher) -> OutboxRelay:
    """The relay of this store in this process, its thread running; it stops when the
    runtime disposes the store's engine (shutdown, or the end of a test)."""
    with _relays_lock:
        relay = _relays.get(id(engine))
        if relay is None or relay.engine is not engine:
            relay = _relays[id(engine)] = OutboxRelay(engine, publisher)

            def stopped(_engine: Engine, key: int = id(engine), relay: OutboxRelay = relay) -> None:
                relay.stop()
                with _relays_lock:
                    if _relays.get(key) is relay:
                        del _relays[key]

            event.listen(engine, "engine_disposed", stopped)
    relay.ensure_running()
    return relay

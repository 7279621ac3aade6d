"""From a parsed CloudEvent to an HTTP answer: validation, handler, outcomes, dedupe, telemetry.

Independent of Flask: the app turns an :class:`Answer` into a response.

| what happens | status | outcome label |
|---|---|---|
| handler returns an event / Reply | 200 + binary CloudEvent | replied |
| handler returns None | 204 | acked |
| handler raises Drop | 204 | dropped |
| duplicate (source, id) | the stored answer | duplicate |
| no handler for the type / data fails its model / DeadLetter | 422 + Kne-Reason | dead_letter |
| handler raises Retry | 503 (+ Retry-After) | retry |
| anything else raises | 500, short body | error |
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import ValidationError
from sqlalchemy.orm import Session

from cascade.cloudevent import CloudEvent
from cascade.codec import CloudEventMessage, binary_headers
from cascade.context import Context
from cascade.events import Event
from cascade.function import CatchAll, Function, Handler
from cascade.http import problem
from cascade.idempotency import Deduper, StoredReply
from cascade.outbox import Outbox
from cascade.outcomes import DeadLetter, Drop, Retry
from cascade.publish import Publisher
from cascade.reply import Reply, outgoing_attributes
from cascade.store import Store, store_refusal
from cascade.telemetry.function_metrics import BoundMetrics, commit_counts, metrics_scope
from cascade.telemetry.logging import reset_event_log_fields, set_event_log_fields
from cascade.telemetry.metrics import OTHER_TYPE, Metrics
from cascade.telemetry.tracing import CONVERSATION_ID, origin_links, traceparent_of

__all__ = ["Answer", "Dispatcher"]

_log = logging.getLogger("cascade.dispatch")
_EMPTY_CONTEXT: Final = otel_context.Context()
_REASON_MAX = 512
_UNSAFE_REASON = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True, slots=True)
class Answer:
    """The HTTP answer to one delivery."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    outcome: str = "acked"


def kne_reason(reason: str) -> str:
    """A header-safe ``Kne-Reason`` value: printable ASCII, one line, bounded length."""
    cleaned = " ".join(_UNSAFE_REASON.sub(" ", reason).split())
    return (cleaned[: _REASON_MAX - 3] + "...") if len(cleaned) > _REASON_MAX else cleaned


class Dispatcher:
    """Runs one function's handlers for parsed CloudEvents."""

    def __init__(
        self,
        function: Function,
        *,
        source: str,
        metrics: Metrics,
        store: Store | None,
        deduper: Deduper | None,
        publisher: Callable[[], Publisher],
        tracer: trace.Tracer,
        function_metrics: BoundMetrics | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.function = function
        self.source = source
        self.metrics = metrics
        self.store = store
        self.deduper = deduper
        self._publisher = publisher
        self._tracer = tracer
        self._function_metrics = function_metrics
        self._outbox = outbox
        self._logger = logging.getLogger(f"cascade.fn.{function.name}")

    # ------------------------------------------------------------------ entry point

    def dispatch(
        self,
        message: CloudEventMessage,
        parent: otel_context.Context | None = None,
        path: str = "/",
    ) -> Answer:
        """Handle ``message``, received at ``path``, under ``parent`` (the HTTP traceparent's
        context): the typed handler of its type at ``/``, else the path's catch-all."""
        started = time.perf_counter()
        attributes = message.attributes
        event_type = attributes["type"]
        event_id = attributes["id"]
        handler = self.function.handlers.get(event_type) if path == "/" else None
        catch_all = None if handler is not None else self.function.catch_alls.get(path)
        # Few attributes on purpose: each one costs CPU at creation and at OTLP export.
        span_attributes: dict[str, Any] = {
            "cloudevents.event_id": event_id,
            "cloudevents.event_source": attributes["source"],
            "cloudevents.event_type": event_type,
            "cloudevents.event_spec_version": attributes["specversion"],
            "messaging.operation.type": "process",
        }
        subject = attributes.get("subject")
        if subject is not None:
            span_attributes["cloudevents.event_subject"] = subject
        conversation = attributes.get("partitionkey")
        if conversation is not None:
            # What ties one saga's spans together for a search (the shop's order id).
            span_attributes[CONVERSATION_ID] = conversation
        span = self._tracer.start_span(
            f"process {event_type}",
            context=parent if parent is not None else _EMPTY_CONTEXT,
            kind=SpanKind.CONSUMER,
            attributes=span_attributes,
            links=origin_links(attributes),
            record_exception=False,
            set_status_on_exception=False,
        )
        # Attach/detach by hand: cheaper than two nested context managers on the hot path.
        context_token = otel_context.attach(trace.set_span_in_context(span, _EMPTY_CONTEXT))
        log_token = set_event_log_fields(
            {
                "function": self.function.name,
                "event_id": event_id,
                "event_type": event_type,
                "event_source": attributes["source"],
            }
        )
        try:
            with metrics_scope(self._function_metrics):
                answer = self._answer(handler or catch_all, message, span, path)
            span.set_attribute("cascade.outcome", answer.outcome)
            if answer.status == 200:
                # Lets the caller (the broker) send the reply on inside this span's trace.
                traceparent = traceparent_of(span.get_span_context())
                if traceparent is not None:
                    answer.headers["traceparent"] = traceparent
        finally:
            reset_event_log_fields(log_token)
            otel_context.detach(context_token)
            span.end()
        elapsed = time.perf_counter() - started
        self.metrics.observe(event_type if handler else OTHER_TYPE, answer.outcome, elapsed)
        return answer

    # ------------------------------------------------------------------ outcomes

    def _answer(
        self,
        handler: Handler | CatchAll | None,
        message: CloudEventMessage,
        span: trace.Span,
        path: str,
    ) -> Answer:
        if handler is None:
            return self._dead_letter(
                span, f"no handler for event type {message.type!r} in {self.function.name!r}"
            )
        event: Event | CloudEvent
        if isinstance(handler, CatchAll):
            event = CloudEvent(message.attributes, message.data)
        else:
            try:
                event = handler.model.model_validate_json(message.data or b"{}")
            except ValidationError as exc:
                return self._dead_letter(span, _validation_reason(handler, exc), errors=exc)
        try:
            return self._run(handler, event, message, path)
        except Retry as signal:
            span.set_status(Status(StatusCode.ERROR, f"retry: {signal.reason}"))
            _log.warning("handler asked for a retry: %s", signal.reason)
            body, headers = problem(503, signal.reason)
            if signal.retry_after_header is not None:
                headers["Retry-After"] = signal.retry_after_header
            return Answer(503, headers, body, "retry")
        except DeadLetter as signal:
            return self._dead_letter(span, signal.reason)
        except Drop as signal:
            _log.info("handler dropped the event: %s", signal.reason or "(no reason)")
            return Answer(204, {}, b"", "dropped")
        except Exception as exc:
            refusal = store_refusal(exc)
            if refusal is not None:
                return self._dead_letter(span, refusal)
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            _log.exception("handler %s failed", handler.name)
            body, headers = problem(500, "the handler failed; the function's logs have the details")
            return Answer(500, headers, body, "error")

    def _dead_letter(
        self, span: trace.Span, reason: str, errors: ValidationError | None = None
    ) -> Answer:
        span.set_status(Status(StatusCode.ERROR, reason))
        _log.warning("event goes to the dead-letter sink: %s", reason)
        members: dict[str, Any] = {}
        if errors is not None:
            members["errors"] = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in errors.errors(include_url=False, include_input=False)[:20]
            ]
        body, headers = problem(422, reason, **members)
        headers["Kne-Reason"] = kne_reason(reason)
        return Answer(422, headers, body, "dead_letter")

    # ------------------------------------------------------------------ running

    def _run(
        self,
        handler: Handler | CatchAll,
        event: Event | CloudEvent,
        message: CloudEventMessage,
        path: str,
    ) -> Answer:
        dedupe = not (isinstance(handler, CatchAll) and handler.idempotent is False)
        if dedupe and self.deduper is not None and self.store is not None:
            # Another path is another endpoint: its deliveries are deduped apart from "/".
            key = message.source if path == "/" else f"{path} {message.source}"
            return self._run_once(handler, event, message, key, self.store, self.deduper)
        ctx = self._context(message, self._open_session)
        try:
            answer = self._reply(handler, self._call(handler, event, ctx), message)
            session = ctx.store_opened
            if session is not None:
                session.commit()
            commit_counts()
            return answer
        finally:
            session = ctx.store_opened
            if session is not None:
                session.close()

    def _run_once(
        self,
        handler: Handler | CatchAll,
        event: Event | CloudEvent,
        message: CloudEventMessage,
        source: str,
        store: Store,
        deduper: Deduper,
    ) -> Answer:
        event_id = message.id
        # Dedupe statements on the DBAPI connection; a Session (ctx.store, ctx.publish) only
        # when the handler asks, in the same transaction: effects, outbox rows and the stored
        # reply commit as one, and the outbox relay is woken after that commit.
        transaction = store.event_transaction()
        try:
            stored = deduper.claim(transaction, source, event_id)
            if stored is not None:
                transaction.rollback()
                self.metrics.duplicate()
                _log.info("duplicate delivery; answering with the stored reply")
                return Answer(stored.status, dict(stored.headers), stored.body, "duplicate")
            ctx = self._context(message, transaction.open_session)
            answer = self._reply(handler, self._call(handler, event, ctx), message)
            deduper.record_and_commit(
                transaction,
                source,
                event_id,
                StoredReply(answer.status, answer.headers, answer.body),
            )
            commit_counts()
        except BaseException:
            transaction.rollback()
            raise
        finally:
            transaction.close()
        if deduper.purge_due():
            self._purge(store, deduper)
        return answer

    def _purge(self, store: Store, deduper: Deduper) -> None:
        try:
            with store.engine.begin() as connection:
                removed = deduper.purge(connection)
            if removed:
                _log.info("removed %d expired dedupe records", removed)
        except Exception:  # housekeeping must never fail an event that already committed
            _log.exception("could not purge expired dedupe records")

    def _open_session(self) -> Session:
        if self.store is None:
            raise RuntimeError("this function has no store")
        return self.store.session()

    def _context(self, message: CloudEventMessage, open_session: Callable[[], Session]) -> Context:
        return Context(
            message.attributes,
            function=self.function.name,
            logger=self._logger,
            open_session=open_session,
            publisher=self._publisher,
            outbox=self._outbox,
        )

    @staticmethod
    def _call(handler: Handler | CatchAll, event: Event | CloudEvent, ctx: Context) -> object:
        if handler.takes_context:
            return handler.func(event, ctx)
        return handler.func(event)

    def _reply(
        self, handler: Handler | CatchAll, result: object, message: CloudEventMessage
    ) -> Answer:
        if result is None:
            return Answer(204, {}, b"", "acked")
        if isinstance(result, Event):
            result = Reply(result)
        if not isinstance(result, Reply):
            raise TypeError(
                f"handler {handler.name} returned {type(result).__name__}; return an Event, "
                "a Reply or None"
            )
        incoming = message.attributes
        attributes = outgoing_attributes(
            result.event,
            source=result.source or self.source,
            subject=result.subject,
            partitionkey=result.partitionkey or incoming.get("partitionkey"),
            extensions=result.extensions,
        )
        _copy_origin(incoming, attributes)
        return Answer(200, binary_headers(attributes), result.event.to_json_bytes(), "replied")


def _copy_origin(incoming: Mapping[str, str], attributes: dict[str, str]) -> None:
    """The CloudEvents traceparent is set once by the originator and never rewritten."""
    origin = incoming.get("traceparent")
    if origin is not None:
        attributes["traceparent"] = origin
        tracestate = incoming.get("tracestate")
        if tracestate is not None:
            attributes["tracestate"] = tracestate
        return
    # The incoming event carried no origin (e.g. sent by curl): this handler originates it.
    here = traceparent_of(trace.get_current_span().get_span_context())
    if here is not None:
        attributes["traceparent"] = here


def _validation_reason(handler: Handler, exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)
    where = ".".join(str(part) for part in first[0]["loc"]) if first else ""
    detail = (
        f"{where}: {first[0]['msg']}" if first and where else (first[0]["msg"] if first else "")
    )
    more = f" (+{len(first) - 1} more)" if len(first) > 1 else ""
    return f"data does not match {handler.model.__name__}: {detail}{more}"

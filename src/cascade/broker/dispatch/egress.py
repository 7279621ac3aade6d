"""What happens to one record for one Trigger (the Kafka dispatcher's RecordDispatcherImpl).

1. Add ``knativekafkapartition`` / ``knativekafkaoffset`` (§6.8), then run the filter (§2).
2. Deliver to the subscriber with retries (§3). On success, a CloudEvent answer is a reply and is
   stored in the log (§5); an empty answer is plain success; any other body is a failure.
3. On failure, send to the dead-letter sink with the error extensions (§4), same policy; a
   CloudEvent answer from the sink is stored too. Without a sink, or if it fails, the event is
   dropped (the cursor moves on, §4.3): counted, logged and shown in the activity feed.

Never dropped for the broker's own sake: an error of the broker while filtering, sending,
reading an answer or storing a reply (a value it cannot encode, data it cannot serialise, ...)
sends the event to the dead-letter sink with ``reason`` naming the stage and the error; a dead
letter the sink cannot take as built is sent once more with every attribute made safe
(:func:`~cascade.broker.dispatch.dead_letter.safe_value`).

``process`` returns only when the record is finished, so the caller may then mark it committable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from opentelemetry.trace import Status, StatusCode

from cascade.broker.dispatch.dead_letter import REASON_EXTENSION, dead_letter_event, safe_value
from cascade.broker.dispatch.delivery import (
    DeliveryResult,
    HttpResponse,
    RetryPolicy,
    TransportError,
    deliver,
)
from cascade.broker.dispatch.filters import Filter
from cascade.broker.dispatch.replies import (
    HOPS_EXTENSION,
    AnswerKind,
    hops_of,
    interpret_answer,
    with_hop,
)
from cascade.broker.dispatch.sender import AttemptTarget
from cascade.broker.event import Record, StoredEvent
from cascade.broker.telemetry.activity import ActivityFeed
from cascade.broker.telemetry.metrics import BrokerMetrics, Outcome
from cascade.broker.telemetry.tracing import BrokerTracing, headers_for, reply_parent
from cascade.broker.topology import TriggerConfig

__all__ = [
    "EgressConfig",
    "Publish",
    "ReplyRefused",
    "SendAttempt",
    "TriggerEgress",
    "with_kafka_metadata",
]

logger = logging.getLogger(__name__)

Publish = Callable[[StoredEvent, Mapping[str, str]], Awaitable[object]]
"""Stores a reply in the Broker's log, with its trace headers; raises when it cannot."""


SendAttempt = Callable[
    [AttemptTarget, StoredEvent, Mapping[str, str], int, float], Awaitable[HttpResponse]
]
"""``send(target, event, record_headers, attempt, timeout)``: one attempt (``HttpSender.send``;
cascade.testing.Chain posts to function apps); raises TransportError without a response."""


@dataclass(frozen=True)
class EgressConfig:
    namespace: str
    trigger: str
    subscriber: str
    filter: Filter
    policy: RetryPolicy
    dead_letter_sink: str | None
    broker: str = ""  # the Broker whose log replies go to (span attributes)
    subscriber_audience: str | None = None  # OIDC audiences (cascade broker --oidc)
    dead_letter_audience: str | None = None

    @classmethod
    def for_trigger(cls, trigger: TriggerConfig) -> EgressConfig:
        """A Trigger's egress as the manifests define it (filter, delivery spec, DLS)."""
        spec = trigger.delivery
        return cls(
            namespace=trigger.namespace,
            trigger=trigger.name,
            subscriber=trigger.subscriber,
            filter=trigger.filter,
            policy=RetryPolicy(spec.retry, spec.backoff, spec.timeout),
            dead_letter_sink=spec.dead_letter_sink,
            broker=trigger.broker,
            subscriber_audience=trigger.subscriber_audience,
            dead_letter_audience=spec.dead_letter_audience,
        )


class ReplyRefused(Exception):
    """The Broker does not take this reply from this Trigger (an EventPolicy says no)."""


def with_kafka_metadata(record: Record) -> StoredEvent:
    """The event as the Kafka dispatcher hands it on: with its partition and offset (§6.8)."""
    attributes = dict(record.event.attributes)
    attributes["knativekafkapartition"] = str(record.partition)
    attributes["knativekafkaoffset"] = str(record.offset)
    return StoredEvent(attributes, record.event.data)


class TriggerEgress:
    def __init__(
        self,
        config: EgressConfig,
        send: SendAttempt,
        publish: Publish,
        metrics: BrokerMetrics,
        *,
        max_hops: int | None = None,
        activity: ActivityFeed | None = None,
        tracing: BrokerTracing | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._sleep = sleep  # the backoff wait; cascade.testing.Chain records it instead
        self._tracing = tracing
        self._send = send
        self._publish = publish
        self._metrics = metrics
        self._max_hops = max_hops
        self._activity = activity
        self._label = f"{config.namespace}/{config.trigger}"
        self._subscriber = AttemptTarget(
            config.subscriber,
            config.namespace,
            config.trigger,
            "subscriber",
            config.subscriber_audience,
        )

    async def process(self, record: Record) -> None:
        """Filter, deliver, reply or dead-letter one record; return when it is finished."""
        event = with_kafka_metadata(record)
        clock = _AttemptClock()
        attempts = 0
        stage = "evaluating the Trigger's filter"
        try:
            if not self.config.filter.matches(event.attributes):
                return
            stage = "delivering to the subscriber"
            result = await self._deliver(self._subscriber, event, record.headers, clock)
            attempts = result.attempts
            stage = "handling the subscriber's answer"
            failed = await self._after_delivery(event, result, clock)
        except Exception as exc:
            failed = self._broker_failure(event, stage, exc)
        if failed is None:
            return
        outcome = await self._dead_letter(failed, record.headers)
        self._note(failed, outcome, attempts, clock)

    async def _after_delivery(
        self, event: StoredEvent, result: DeliveryResult, clock: _AttemptClock
    ) -> StoredEvent | None:
        """None when delivered (a reply stored), else the dead letter to send."""
        if not result.succeeded:
            logger.info(
                "trigger %s: delivery of event %s to %s failed: %s",
                self._label,
                event.attributes.get("id"),
                self.config.subscriber,
                result.describe(),
            )
            return dead_letter_event(event, self.config.subscriber, result.response)
        assert result.response is not None
        problem = await self._handle_answer(event, result.response, "subscriber")
        if problem is None:
            self._count(Outcome.DELIVERED)
            self._note(event, Outcome.DELIVERED, result.attempts, clock)
            return None
        logger.warning(
            "trigger %s: subscriber %s answered %s; dead-lettering event %s without retry",
            self._label,
            self.config.subscriber,
            problem,
            event.attributes.get("id"),
        )
        return dead_letter_event(
            event, self.config.subscriber, None, reason=f"the subscriber answered {problem}"
        )

    def _broker_failure(self, event: StoredEvent, stage: str, exc: Exception) -> StoredEvent:
        logger.exception(
            "trigger %s: broker error while %s for event %s; dead-lettering it",
            self._label,
            stage,
            event.attributes.get("id"),
        )
        # Built without dead_letter_event: whatever failed must not fail this too.
        failed = StoredEvent(
            {**event.attributes, "knativeerrordest": self.config.subscriber}, event.data
        )
        return _made_safe(failed, f"broker error while {stage}: {type(exc).__name__}: {exc}")

    async def _deliver(
        self,
        target: AttemptTarget,
        event: StoredEvent,
        record_headers: Mapping[str, str],
        clock: _AttemptClock | None = None,
    ) -> DeliveryResult:
        async def send_once(attempt: int, timeout: float) -> HttpResponse:
            if clock is None:
                return await self._send(target, event, record_headers, attempt, timeout)
            clock.begin()
            try:
                response = await self._send(target, event, record_headers, attempt, timeout)
            except TransportError as exc:
                clock.end(None, str(exc))
                raise
            clock.end(response.status, None)
            return response

        def on_retry(attempt: int) -> None:
            self._count(Outcome.RETRIED)
            if clock is not None:
                self._note(event, Outcome.RETRIED, attempt - 1, clock)

        return await deliver(send_once, self.config.policy, sleep=self._sleep, on_retry=on_retry)

    async def _dead_letter(self, event: StoredEvent, record_headers: Mapping[str, str]) -> Outcome:
        sink = self.config.dead_letter_sink
        event_id = event.attributes.get("id")
        if sink is None:
            self._count(Outcome.DROPPED)
            logger.warning(
                "trigger %s: event %s dropped: delivery failed and there is no dead-letter sink",
                self._label,
                event_id,
            )
            return Outcome.DROPPED
        target = AttemptTarget(
            sink,
            self.config.namespace,
            self.config.trigger,
            "dead-letter sink",
            self.config.dead_letter_audience,
        )
        try:
            result = await self._deliver(target, event, record_headers)
        except Exception as exc:
            logger.exception(
                "trigger %s: the dead letter of event %s could not be sent as built; "
                "sending it with every attribute made safe",
                self._label,
                event_id,
            )
            why = f"the sink could not be sent the dead letter as built: {exc!r}"
            event = _made_safe(event, f"{event.attributes.get(REASON_EXTENSION, '')} ({why})")
            result = await self._deliver(target, event, record_headers)
        if not result.succeeded:
            self._count(Outcome.DROPPED)
            logger.warning(
                "trigger %s: event %s dropped: dead-letter sink %s failed: %s",
                self._label,
                event_id,
                sink,
                result.describe(),
            )
            return Outcome.DROPPED
        assert result.response is not None
        try:
            problem = await self._handle_answer(event, result.response, "dead-letter sink")
        except Exception as exc:  # the event is in the sink already; only its answer is lost
            problem = f"an answer the broker could not handle ({exc!r})"
        if problem is not None:
            logger.warning(
                "trigger %s: dead-letter sink %s took event %s but answered %s",
                self._label,
                sink,
                event_id,
                problem,
            )
        self._count(Outcome.DEAD_LETTERED)
        return Outcome.DEAD_LETTERED

    async def _handle_answer(
        self, answered: StoredEvent, response: HttpResponse, source: str
    ) -> str | None:
        """Store a reply if the answer is one; None when all went well, else the problem."""
        answer = interpret_answer(response)
        if answer.kind is AnswerKind.NO_REPLY:
            return None
        if answer.kind is AnswerKind.MALFORMED:
            return f"a body that is not a CloudEvent ({answer.problem})"
        assert answer.event is not None
        reply = answer.event
        if self._max_hops is not None:
            reply = with_hop(reply, answered)
            if hops_of(reply) > self._max_hops:
                self._count(Outcome.DROPPED)
                logger.warning(
                    "trigger %s: reply %s (type %s) from the %s dropped: %s=%d is over "
                    "--max-hops %d (a reply loop?)",
                    self._label,
                    reply.attributes.get("id"),
                    reply.attributes.get("type"),
                    source,
                    HOPS_EXTENSION,
                    hops_of(reply),
                    self._max_hops,
                )
                return None
        record_headers: Mapping[str, str] = response.trace_headers
        span = None
        parent = (
            reply_parent(response.trace_headers, response.headers)
            if self._tracing is not None and record_headers
            else None
        )
        if parent is not None and self._tracing is not None:
            destination = f"{self.config.namespace}/{self.config.broker}"
            span = self._tracing.reply_span(parent, destination, reply)
            record_headers = headers_for(span, parent)
        try:
            await self._publish(reply, record_headers)
        except ReplyRefused as exc:
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, "the broker refused the reply"))
            return f"a reply the broker refuses ({exc})"
        except Exception as exc:  # the log is down: Kafka sends the original to the DLS
            logger.error("trigger %s: storing a reply failed: %s", self._label, exc)
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, "storing the reply failed"))
            return f"a reply that could not be stored ({exc})"
        finally:
            if span is not None:
                span.end()
        return None

    def _count(self, outcome: Outcome) -> None:
        self._metrics.delivery(self.config.namespace, self.config.trigger, outcome)

    def _note(
        self, event: StoredEvent, outcome: Outcome, attempt: int, clock: _AttemptClock
    ) -> None:
        """One entry of the activity feed (``cascade run``, ``cascade tail``)."""
        if self._activity is None:
            return
        self._activity.record(
            namespace=self.config.namespace,
            trigger=self.config.trigger,
            subscriber=self.config.subscriber,
            attributes=event.attributes,
            attempt=attempt,
            outcome=outcome.value,
            status=clock.status,
            error=clock.error,
            reason=event.attributes.get("reason") if outcome is Outcome.DEAD_LETTERED else None,
            latency=clock.latency,
            elapsed=time.perf_counter() - clock.first,
        )


def _made_safe(event: StoredEvent, reason: str) -> StoredEvent:
    """``event`` with every attribute value safe for any receiver and ``reason`` set."""
    attributes = {name: safe_value(value) for name, value in event.attributes.items()}
    attributes[REASON_EXTENSION] = safe_value(reason)[:1000]
    return StoredEvent(attributes, event.data)


class _AttemptClock:
    """The last subscriber attempt's status and duration, for the activity feed."""

    __slots__ = ("_started", "error", "first", "latency", "status")

    def __init__(self) -> None:
        self.first = self._started = time.perf_counter()
        self.status: int | None = None
        self.error: str | None = None
        self.latency = 0.0

    def begin(self) -> None:
        self._started = time.perf_counter()

    def end(self, status: int | None, error: str | None) -> None:
        self.latency = time.perf_counter() - self._started
        self.status, self.error = status, error

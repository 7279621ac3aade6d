"""Trace context through the broker, as the Kafka data plane does it (§7.1).

Policy PROPAGATE: spans exist, and a ``traceparent`` goes downstream, only when the producer
sent trace context. The ingress SERVER span's context is stored beside the event as record
headers (never as ``ce-*`` attributes); each delivery attempt is a CLIENT span child of it and
injects a new ``traceparent`` (same trace id, the attempt's span id) into the request. The
CloudEvents ``traceparent`` extension is an ordinary attribute and passes untouched.

A reply is stored under a PRODUCER span ``send <reply type>`` whose parent is the span that
made the reply: the subscriber's ``traceparent`` response header (the Cascade runtime names its
handler span there) when it belongs to the attempt's trace, else the attempt span. Its context
becomes the reply's record headers, so the next deliveries continue the same trace below the
handler that answered.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from cascade.broker.event import StoredEvent
from cascade.telemetry.tracing import CONVERSATION_ID

__all__ = ["BrokerTracing", "headers_for", "incoming_context", "reply_parent"]

_TRACER_NAME = "cascade.broker"


def incoming_context(headers: Mapping[str, str]) -> Context | None:
    """The W3C trace context in ``headers`` (HTTP or record headers), or None if there is none."""
    if headers.get("traceparent") is None:
        return None
    context = propagate.extract(headers)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def reply_parent(attempt_headers: Mapping[str, str], answer: Mapping[str, str]) -> Context | None:
    """Where a reply's span hangs: the answer's ``traceparent`` (the handler span) if it is in
    the attempt's trace, else the attempt; None when the attempt was not traced."""
    attempt = incoming_context(attempt_headers)
    if attempt is None:
        return None
    traceparent = answer.get("traceparent")
    if traceparent is None:
        return attempt
    carrier = {"traceparent": traceparent}
    for name in ("tracestate", "baggage"):
        value = answer.get(name) or attempt_headers.get(name)
        if value is not None:
            carrier[name] = value
    answered = incoming_context(carrier)
    if answered is None:
        return attempt
    same_trace = (
        trace.get_current_span(answered).get_span_context().trace_id
        == trace.get_current_span(attempt).get_span_context().trace_id
    )
    return answered if same_trace else attempt


def headers_for(span: Span, parent: Context) -> dict[str, str]:
    """W3C headers (traceparent, tracestate, baggage) naming ``span`` as the parent."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span, parent))
    return carrier


def _event_attributes(event: StoredEvent) -> dict[str, str]:
    attributes = event.attributes
    result = {
        "messaging.message.id": attributes.get("id", ""),
        "cloudevents.event_id": attributes.get("id", ""),
        "cloudevents.event_source": attributes.get("source", ""),
        "cloudevents.event_type": attributes.get("type", ""),
        "cloudevents.event_spec_version": attributes.get("specversion", ""),
    }
    if "subject" in attributes:
        result["cloudevents.event_subject"] = attributes["subject"]
    if "partitionkey" in attributes:
        result[CONVERSATION_ID] = attributes["partitionkey"]
    return result


class BrokerTracing:
    """Starts the broker's spans on the global tracer provider."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self._tracer = tracer or trace.get_tracer(_TRACER_NAME)

    def ingress_span(self, parent: Context, destination: str, event: StoredEvent) -> Span:
        attributes: dict[str, str | int] = dict(_event_attributes(event))
        attributes["messaging.destination.name"] = destination
        attributes["messaging.operation.type"] = "send"
        attributes["http.request.method"] = "POST"
        return self._tracer.start_span(
            f"POST /{destination}", context=parent, kind=SpanKind.SERVER, attributes=attributes
        )

    def reply_span(self, parent: Context, destination: str, reply: StoredEvent) -> Span:
        """PRODUCER span storing a subscriber's reply in the Broker's log (§5.2)."""
        attributes: dict[str, str | int] = dict(_event_attributes(reply))
        attributes["messaging.destination.name"] = destination
        attributes["messaging.operation.type"] = "send"
        return self._tracer.start_span(
            f"send {reply.attributes.get('type', '')}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )

    def attempt_span(
        self,
        parent: Context,
        *,
        trigger: str,
        target: str,
        url: str,
        attempt: int,
        event: StoredEvent,
    ) -> Span:
        attributes: dict[str, str | int] = dict(_event_attributes(event))
        attributes.update(
            {
                "messaging.operation.type": "process",
                "cascade.trigger": trigger,
                "cascade.delivery.target": target,
                "cascade.delivery.attempt": attempt,
                "http.request.method": "POST",
                "url.full": url,
            }
        )
        return self._tracer.start_span(
            f"deliver {trigger}", context=parent, kind=SpanKind.CLIENT, attributes=attributes
        )

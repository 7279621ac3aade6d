"""Trace context through the broker, as the Kafka data plane does it (§7.1).

Policy PROPAGATE: spans exist, and a ``traceparent`` goes downstream, only when the producer
sent trace context. The ingress SERVER span's context is stored beside the event as record
headers (never as ``ce-*`` attributes); each delivery attempt is a CLIENT span child of it and
injects a new ``traceparent`` (same trace id, the attempt's span id) into the request. The
CloudEvents ``traceparent`` extension is an ordinary attribute and passes untouched.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from cascade.broker.event import StoredEvent

__all__ = ["BrokerTracing", "incoming_context"]

_TRACER_NAME = "cascade.broker"


def incoming_context(headers: Mapping[str, str]) -> Context | None:
    """The W3C trace context in ``headers`` (HTTP or record headers), or None if there is none."""
    if headers.get("traceparent") is None:
        return None
    context = propagate.extract(headers)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


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

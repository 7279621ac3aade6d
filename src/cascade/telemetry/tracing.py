"""OpenTelemetry tracing set up once per process, the standard OTEL_* way.

Call :func:`setup_tracing` after fork (gunicorn ``post_fork``), never in a master process: the
BatchSpanProcessor starts a thread that does not survive ``fork``.

Environment honoured (OpenTelemetry SDK conventions):

- ``OTEL_SDK_DISABLED=true``: spans are no-ops and nothing is exported.
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: read by the SDK's TracerProvider.
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: export over
  OTLP/HTTP with a BatchSpanProcessor (``OTEL_EXPORTER_OTLP_*`` headers/timeouts apply).
  ``OTEL_TRACES_EXPORTER=none`` turns export off even when an endpoint is set.
- ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``: override the service name passed in.
- ``OTEL_PROPAGATORS``: when unset, W3C TraceContext + W3C Baggage are installed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "CONVERSATION_ID",
    "ORIGIN_LINK",
    "origin_links",
    "otlp_endpoint_configured",
    "sdk_disabled",
    "setup_tracing",
    "span_context_from_traceparent",
    "traceparent_of",
]

CONVERSATION_ID = "messaging.message.conversation_id"
"""Span attribute holding an event's CloudEvents ``partitionkey`` (the shop's order id): the
OpenTelemetry messaging name for what ties a conversation's messages together. Every span
about an event carries it, so one search finds every trace of an order (Jaeger tag search,
``cascade trace ORDER_ID``)."""

ORIGIN_LINK = "cloudevents.traceparent"
"""Value of the ``cascade.link`` attribute on the link to an event's CloudEvents
``traceparent`` extension (the span that originated the event)."""

_lock = threading.Lock()
_provider: TracerProvider | None = None


def sdk_disabled() -> bool:
    """True when ``OTEL_SDK_DISABLED`` is ``true`` (case-insensitive), as the SDK reads it."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def otlp_endpoint_configured() -> bool:
    """True when traces should leave the process over OTLP/HTTP."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _resource(service_name: str) -> Resource:
    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win; otherwise the SDK's "unknown_service"
    # placeholder is replaced by the function's name.
    resource = Resource.create({})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    return resource


def setup_tracing(service_name: str) -> TracerProvider:
    """Install (once per process) and return the global SDK TracerProvider.

    A second call returns the provider of the first call, whatever ``service_name`` it
    passes: the global provider can only be set once per process.
    """
    global _provider
    with _lock:
        if _provider is not None:
            return _provider
        if not os.environ.get("OTEL_PROPAGATORS"):
            propagate.set_global_textmap(
                CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
            )
        # The SDK reads OTEL_TRACES_SAMPLER(_ARG) and OTEL_SDK_DISABLED itself.
        provider = TracerProvider(resource=_resource(service_name))
        if not sdk_disabled() and otlp_endpoint_configured():
            # Imported lazily: the exporter pulls in protobuf, which most tests never need.
            # Ours is the SDK's exporter with a leaner protobuf encoder (telemetry/otlp.py).
            from cascade.telemetry.otlp import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _provider = provider
        return provider


_TRACECONTEXT = TraceContextTextMapPropagator()


def traceparent_of(span_context: trace.SpanContext) -> str | None:
    """The W3C ``traceparent`` value of ``span_context`` (None when it is invalid)."""
    if not span_context.is_valid:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def span_context_from_traceparent(
    traceparent: str, tracestate: str | None = None
) -> trace.SpanContext | None:
    """Parse a W3C ``traceparent`` (e.g. the CloudEvents extension); None when malformed."""
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    span_context = trace.get_current_span(_TRACECONTEXT.extract(carrier)).get_span_context()
    return span_context if span_context.is_valid else None


def origin_links(attributes: Mapping[str, str]) -> list[Link] | None:
    """The link to an event's origin (its CloudEvents ``traceparent``), or None."""
    traceparent = attributes.get("traceparent")
    if traceparent is None:
        return None
    span_context = span_context_from_traceparent(traceparent, attributes.get("tracestate"))
    if span_context is None:
        return None
    return [Link(span_context, {"cascade.link": ORIGIN_LINK})]

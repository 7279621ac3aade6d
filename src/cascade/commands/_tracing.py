"""Spans of the CLI itself (``cascade dlq replay``), exported where the running system's go.

The endpoint is the running ``cascade run``'s receiver (``run.json``), else the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` (e.g. a port-forwarded
collector); ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn it off. Without an
endpoint there is no tracer: a command then sends no ``traceparent`` rather than one naming a
span nobody will ever see (which would leave its children orphaned).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cascade.commands._discover import running_state
from cascade.traces.receiver import traces_url

__all__ = ["CLI_SERVICE", "cli_tracer", "cli_traces_url", "inject"]

CLI_SERVICE: Final = "cascade-cli"
_EXPORT_TIMEOUT: Final = 5
_PROPAGATOR: Final = TraceContextTextMapPropagator()


def cli_traces_url(data_dir: Path, environ: Mapping[str, str] = os.environ) -> str | None:
    """Where the CLI's spans go, or None when they would go nowhere."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    state = running_state(data_dir)
    endpoint = state.traces_endpoint() if state is not None else None
    if endpoint:
        return traces_url(endpoint)
    full = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if full:
        return full
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return traces_url(base) if base else None


@contextmanager
def cli_tracer(data_dir: Path) -> Iterator[trace.Tracer | None]:
    """A tracer exporting each span as it ends (a CLI has few), flushed on exit; None when
    there is nowhere to export to."""
    url = cli_traces_url(data_dir)
    if url is None:
        yield None
        return
    # Imported here: protobuf and the exporter are not needed by commands that do not trace.
    from cascade.telemetry.otlp import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: CLI_SERVICE}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=_EXPORT_TIMEOUT))
    )
    try:
        yield provider.get_tracer("cascade.cli")
    finally:
        provider.shutdown()


def inject(headers: dict[str, str], span: Span) -> None:
    """Put ``span`` in ``headers`` as the W3C ``traceparent`` (and ``tracestate``)."""
    _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))

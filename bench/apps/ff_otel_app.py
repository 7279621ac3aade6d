"""Peer (e): peer (d) plus opentelemetry-instrumentation-flask, exporting like the Cascade row.

The same processor and transport as the runtime (``cascade.telemetry.tracing``): a
BatchSpanProcessor with the SDK's defaults and the OTLP/HTTP protobuf exporter, endpoint from
the standard ``OTEL_EXPORTER_OTLP_*`` variables (the harness points every traced row at the
same dropping sink). Imported in each gunicorn worker after fork (no ``--preload``), so the
processor's thread lives in the worker.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bench.apps.ff_app import app

_provider = TracerProvider(resource=Resource.create({"service.name": "bench-ff-otel"}))
_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(_provider)

FlaskInstrumentor().instrument_app(app)  # type: ignore[no-untyped-call]

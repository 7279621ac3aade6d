"""Baseline (c): the SDK handler of (b) plus opentelemetry-instrumentation-flask.

Spans go through a BatchSpanProcessor to an OTLP/HTTP exporter (endpoint from the standard
``OTEL_EXPORTER_OTLP_*`` variables; the harness points it at a sink that drops everything), the
same export path the Cascade runtime uses. gunicorn imports this module in each worker after
fork (no ``--preload``), so the processor's thread starts in the worker, where it lives.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bench.apps.sdk_flask import create_app

_provider = TracerProvider(resource=Resource.create({"service.name": "bench-sdk-otel"}))
_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(_provider)

app = create_app()
FlaskInstrumentor().instrument_app(app)  # type: ignore[no-untyped-call]

"""Our OTLP span encoder must produce the same messages as the SDK's, for every span shape."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from cascade.telemetry.otlp import OTLPSpanExporter, encode_spans
from tests.unit.telemetry.otlp_collector import Collector

REMOTE = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(1),
    trace_state=TraceState([("vendor", "v1"), ("other", "x")]),
)


def make_spans(resource: Resource) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plain = provider.get_tracer("plain")
    versioned = provider.get_tracer("cascade", "0.1.0", schema_url="https://example.com/s")
    attributed = provider.get_tracer("scoped", "1", attributes={"scope.attr": "yes"})
    for kind in SpanKind:
        with plain.start_as_current_span(f"kind {kind.name}", kind=kind):
            pass
    with versioned.start_as_current_span(
        "process com.example.x",
        context=set_span_in_context(NonRecordingSpan(REMOTE)),
        kind=SpanKind.CONSUMER,
        links=[Link(REMOTE, {"cascade.link": "origin"}), Link(REMOTE)],
        attributes={
            "s": "text",
            "empty": "",
            "unicode": "café ☕",
            "t": True,
            "f": False,
            "zero": 0,
            "i": 42,
            "neg": -7,
            "big": 2**62,
            "d": 1.5,
            "dz": 0.0,
            "strs": ["a", "b"],
            "ints": [1, -2],
            "bools": [True, False],
            "floats": [0.5],
            "nothing": [],
        },
    ) as span:
        span.add_event("first", {"k": "v"})
        span.add_event("bare")
        span.set_status(Status(StatusCode.ERROR, "it broke"))
        with plain.start_as_current_span("child"):  # local parent
            pass
    with attributed.start_as_current_span("ok") as span:
        span.set_status(Status(StatusCode.OK))
    with plain.start_as_current_span("") as span:  # empty name
        span.record_exception(ValueError("boom"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize(
    "resource",
    [
        Resource.create({"service.name": "greeter"}),
        Resource({"service.name": "x", "n": 3}, schema_url="https://example.com/r"),
        Resource({}),
    ],
)
def test_same_message_as_the_sdk(resource: Resource) -> None:
    spans = make_spans(resource)
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    theirs = ExportTraceServiceRequest.FromString(sdk_encode(spans).SerializeToString())
    assert ours == theirs
    assert len(ours.resource_spans[0].scope_spans) == 3


def test_two_resources_keep_their_order() -> None:
    spans = make_spans(Resource({"service.name": "a"})) + make_spans(
        Resource({"service.name": "b"})
    )
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert ours == ExportTraceServiceRequest.FromString(sdk_encode(spans).SerializeToString())
    assert len(ours.resource_spans) == 2


def test_empty_batch() -> None:
    assert encode_spans([]) == b""


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def test_exporter_posts_our_encoding_with_sdk_options(collector: Collector) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression

    spans = make_spans(Resource({"service.name": "greeter"}))
    exporter = OTLPSpanExporter(
        endpoint=collector.url, headers={"x-tenant": "t1"}, compression=Compression.Gzip
    )
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    ((headers, body),) = collector.bodies
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-tenant"] == "t1"
    assert headers["content-encoding"] == "gzip"
    received = ExportTraceServiceRequest.FromString(gzip.decompress(body))
    assert received == ExportTraceServiceRequest.FromString(sdk_encode(spans).SerializeToString())
    assert exporter.export(spans) is SpanExportResult.FAILURE  # after shutdown


def test_exporter_reports_failure_on_rejection() -> None:
    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", timeout=1)
    try:
        spans = make_spans(Resource({}))[:1]
        assert exporter.export(spans) is SpanExportResult.FAILURE
    finally:
        exporter.shutdown()

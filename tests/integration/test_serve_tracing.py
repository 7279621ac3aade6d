"""Spans leave real gunicorn workers over OTLP/HTTP (tracing is started after fork)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.integration.server import serve
from tests.unit.telemetry.otlp_collector import Collector

pytestmark = pytest.mark.slow

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def test_worker_spans_reach_the_collector(tmp_path: Path) -> None:
    collector = Collector()
    try:
        endpoint = collector.url.removesuffix("/v1/traces")
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        with serve(tmp_path, "--workers", "2", env=env) as server:
            answer = server.request(
                "POST",
                "/",
                b'{"action": "reply", "key": "traced"}',
                {
                    "ce-specversion": "1.0",
                    "ce-id": "traced-1",
                    "ce-source": "/integration",
                    "ce-type": "com.example.probe.command",
                    "Content-Type": "application/json",
                    "traceparent": f"00-{TRACE}-{PARENT}-01",
                },
            )
            assert answer.status == 200
            spans = []
            deadline = time.monotonic() + 30
            while not spans and time.monotonic() < deadline:
                for _, body in list(collector.bodies):
                    request = ExportTraceServiceRequest.FromString(body)
                    for resource_spans in request.resource_spans:
                        for scope_spans in resource_spans.scope_spans:
                            spans += [
                                (resource_spans.resource, s)
                                for s in scope_spans.spans
                                if s.trace_id.hex() == TRACE
                            ]
                time.sleep(0.1)
        assert spans, f"no span of trace {TRACE} arrived:\n{server.output()}"
        resource, span = spans[0]
        assert span.name == "process com.example.probe.command"
        assert span.parent_span_id.hex() == PARENT
        attributes = {kv.key: kv.value.string_value for kv in resource.attributes}
        assert attributes["service.name"] == "probe"
    finally:
        collector.close()

"""setup_tracing touches process-global state, so each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import json
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from cascade.telemetry.tracing import setup_tracing

first = setup_tracing("greeter")
second = setup_tracing("other")
processors = first._active_span_processor._span_processors
span = trace.get_tracer("probe").start_span("x")
print(json.dumps({
    "same": first is second,
    "global": trace.get_tracer_provider() is first,
    "service": first.resource.attributes["service.name"],
    "batch": [isinstance(p, BatchSpanProcessor) for p in processors],
    "fields": sorted(propagate.get_global_textmap().fields),
    "sampler": type(first.sampler).__name__,
    "recording": span.is_recording(),
}))
span.end()
"""


def _probe(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    clean.update(env)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_idempotent_and_global_with_w3c_propagators() -> None:
    got = _probe()
    assert got["same"] is True
    assert got["global"] is True
    assert got["service"] == "greeter"
    assert got["batch"] == []  # no endpoint, no exporter
    assert got["fields"] == ["baggage", "traceparent", "tracestate"]
    assert got["recording"] is True


def test_otlp_endpoint_adds_batch_exporter() -> None:
    # Sampled out, so nothing waits at exit to reach the (absent) collector.
    got = _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_TRACES_SAMPLER="always_off")
    assert got["batch"] == [True]


def test_traces_exporter_none_wins_over_endpoint() -> None:
    got = _probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_TRACES_EXPORTER="none")
    assert got["batch"] == []


@pytest.mark.parametrize("value", ["true", "TRUE", " true "])
def test_sdk_disabled_gives_non_recording_spans(value: str) -> None:
    got = _probe(OTEL_SDK_DISABLED=value, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert got["recording"] is False
    assert got["batch"] == []


def test_sampler_from_env() -> None:
    off = _probe(OTEL_TRACES_SAMPLER="always_off")
    assert off["sampler"] == "StaticSampler"
    assert off["recording"] is False
    assert _probe()["sampler"] == "ParentBased"  # the SDK default: parentbased_always_on


def test_service_name_env_wins() -> None:
    assert _probe(OTEL_SERVICE_NAME="from-env")["service"] == "from-env"
    assert _probe(OTEL_RESOURCE_ATTRIBUTES="service.name=attr")["service"] == "attr"

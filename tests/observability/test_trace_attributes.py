"""In-process checks of what the trace convention needs from the runtime and the broker."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from flask import abort
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cascade import Function, HttpContext, Publisher
from cascade.broker.telemetry.tracing import reply_parent
from cascade.loader import load_module
from cascade.settings import Settings
from cascade.telemetry.tracing import CONVERSATION_ID
from cascade.testing import FunctionClient

METERED = Path(__file__).with_name("metered_function.py")
TRACE = "0af7651916cd43dd8448eb211c80319c"
ATTEMPT = f"00-{TRACE}-b7ad6b7169203331-01"
HANDLER = f"00-{TRACE}-00f067aa0ba902b7-01"
OTHER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def metered() -> ModuleType:
    return load_module(METERED)


def test_handler_spans_carry_the_partitionkey_as_conversation_id(
    metered: ModuleType, tmp_path: Path
) -> None:
    with FunctionClient(metered.fn, Settings(data_dir=tmp_path)) as client:
        client.send(metered.Ping(), partitionkey="order-42", headers={"traceparent": ATTEMPT})
        client.send(metered.Ping())
        first, second = client.spans()
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes[CONVERSATION_ID] == "order-42"
    assert CONVERSATION_ID not in second.attributes


def test_route_spans_record_the_status_and_fail_on_5xx(tmp_path: Path) -> None:
    fn = Function("routes")

    @fn.route("/ok")
    def ok(ctx: HttpContext) -> tuple[str, int]:
        return "", 204

    @fn.route("/missing")
    def missing(ctx: HttpContext) -> None:
        abort(404)

    @fn.route("/broken")
    def broken(ctx: HttpContext) -> tuple[str, int]:
        return "down", 503

    with FunctionClient(fn, Settings(data_dir=tmp_path)) as client:
        assert [client.get(path).status for path in ("/ok", "/missing", "/broken")] == [
            204,
            404,
            503,
        ]
        spans = {span.name: span for span in client.spans()}
    assert {name: s.attributes["http.response.status_code"] for name, s in spans.items()} == {
        "GET /ok": 204,
        "GET /missing": 404,
        "GET /broken": 503,
    }
    assert spans["GET /ok"].kind is SpanKind.SERVER
    assert spans["GET /ok"].status.status_code is StatusCode.UNSET
    assert spans["GET /broken"].status.status_code is StatusCode.ERROR


def test_the_publisher_span_carries_the_conversation_id(metered: ModuleType) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with Publisher(None, "/test", tracer_provider=provider) as publisher:
        publisher.sink = "http://127.0.0.1:9/"  # refused at once: the span still ends
        publisher.retries = 0
        with pytest.raises(Exception, match="unreachable"):
            publisher.publish(metered.Ping(), partitionkey="order-7")
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[CONVERSATION_ID] == "order-7"
    provider.shutdown()


def _span_id(context: object) -> str:
    assert context is not None
    span_context = trace.get_current_span(context).get_span_context()  # type: ignore[arg-type]
    return f"{span_context.span_id:016x}"


def test_a_reply_hangs_below_the_handler_span_the_answer_names() -> None:
    attempt = {"traceparent": ATTEMPT, "tracestate": "vendor=1"}
    assert _span_id(reply_parent(attempt, {"traceparent": HANDLER})) == "00f067aa0ba902b7"
    # An answer from another trace, a broken one, or none: the attempt span is the parent.
    for answer in ({"traceparent": OTHER}, {"traceparent": "garbage"}, {}):
        assert _span_id(reply_parent(attempt, answer)) == "b7ad6b7169203331", answer
    # No trace context on the attempt (the producer sent none): no reply span at all.
    assert reply_parent({}, {"traceparent": HANDLER}) is None

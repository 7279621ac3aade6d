"""Reply envelopes and the trace convention: HTTP traceparent = parent, CE traceparent = link."""

from __future__ import annotations

from types import ModuleType

from opentelemetry.trace import SpanKind, StatusCode

from cascade.testing import FunctionClient

PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"
PARENT = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"
ORIGIN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ORIGIN = f"00-{ORIGIN_TRACE}-00f067aa0ba902b7-01"


def test_reply_inherits_partitionkey_and_copies_origin_unchanged(
    client: FunctionClient, probe: ModuleType
) -> None:
    result = client.send(
        probe.Command(action="reply"),
        partitionkey="order-7",
        subject="incoming-subject",
        extensions={"traceparent": ORIGIN, "tracestate": "vendor=1"},
        headers={"traceparent": PARENT},
    )
    attributes = result.attributes
    assert attributes["partitionkey"] == "order-7"
    assert attributes["traceparent"] == ORIGIN
    assert attributes["tracestate"] == "vendor=1"
    assert "subject" not in attributes  # a reply's subject is its own


def test_reply_options_override_envelope(client: FunctionClient, probe: ModuleType) -> None:
    result = client.send(probe.Command(action="reply_options"), partitionkey="order-7")
    attributes = result.attributes
    assert attributes["subject"] == "s-1"
    assert attributes["partitionkey"] == "pk-reply"
    assert attributes["tenant"] == "t1"


def test_reply_source_is_configurable(probe: ModuleType, tmp_path: object) -> None:
    from pathlib import Path

    from cascade.settings import Settings

    settings = Settings(data_dir=Path(str(tmp_path)), source="//shop/probe")
    with FunctionClient(probe.fn, settings) as c:
        assert c.send(probe.Command()).attributes["source"] == "//shop/probe"


def test_span_is_child_of_http_traceparent_and_links_the_origin(
    client: FunctionClient, probe: ModuleType
) -> None:
    result = client.send(
        probe.Command(),
        event_id="e-42",
        subject="sub",
        extensions={"traceparent": ORIGIN},
        headers={"traceparent": PARENT},
    )
    (span,) = client.spans()
    assert span.name == "process com.example.probe.command"
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_SPAN
    assert format(span.context.trace_id, "032x") == PARENT_TRACE
    (link,) = span.links
    assert format(link.context.trace_id, "032x") == ORIGIN_TRACE
    attributes = dict(span.attributes or {})
    assert attributes["cloudevents.event_id"] == "e-42"
    assert attributes["cloudevents.event_source"] == "/cascade/testing"
    assert attributes["cloudevents.event_type"] == "com.example.probe.command"
    assert attributes["cloudevents.event_spec_version"] == "1.0"
    assert attributes["cloudevents.event_subject"] == "sub"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["cascade.outcome"] == "replied"
    # The reply was built inside the span: the response's traceparent names this span.
    span_id = format(span.context.span_id, "016x")
    assert result.headers["traceparent"] == f"00-{PARENT_TRACE}-{span_id}-01"


def test_without_http_traceparent_the_span_is_a_root(
    client: FunctionClient, probe: ModuleType
) -> None:
    client.send(probe.Command(), extensions={"traceparent": ORIGIN})
    (span,) = client.spans()
    assert span.parent is None
    assert format(span.context.trace_id, "032x") != ORIGIN_TRACE
    assert len(span.links) == 1


def test_origin_is_set_by_the_handler_when_the_incoming_event_has_none(
    client: FunctionClient, probe: ModuleType
) -> None:
    result = client.send(probe.Command(), headers={"traceparent": PARENT})
    (span,) = client.spans()
    assert span.links == ()
    origin = result.attributes["traceparent"]
    assert origin == result.headers["traceparent"]
    assert PARENT_TRACE in origin


def test_malformed_ce_traceparent_is_no_link_and_no_error(
    client: FunctionClient, probe: ModuleType
) -> None:
    result = client.send(
        probe.Command(), extensions={"traceparent": "garbage"}, headers={"traceparent": "junk"}
    )
    assert result.status == 200
    assert result.attributes["traceparent"] == "garbage"  # never rewritten
    (span,) = client.spans()
    assert span.links == ()
    assert span.parent is None


def test_failures_mark_the_span_as_error(client: FunctionClient, probe: ModuleType) -> None:
    for action in ("boom", "retry", "dead"):
        client.send(probe.Command(action=action))
    statuses = {
        dict(s.attributes or {})["cascade.outcome"]: s.status.status_code for s in client.spans()
    }
    assert statuses == {
        "error": StatusCode.ERROR,
        "retry": StatusCode.ERROR,
        "dead_letter": StatusCode.ERROR,
    }
    boom = next(s for s in client.spans() if dict(s.attributes or {})["cascade.outcome"] == "error")
    assert boom.events[0].name == "exception"


def test_structured_and_03_events_are_handled(client: FunctionClient, probe: ModuleType) -> None:
    assert client.send(probe.Command(key="s"), structured=True).status == 200
    result = client.send(probe.Command(key="v"), specversion="0.3")
    assert result.status == 200
    assert result.attributes["specversion"] == "1.0"
    assert client.send(probe.Command(key="w"), specversion="0.3", structured=True).status == 200


def test_binding_rejections_create_no_span_and_count_as_rejected(client: FunctionClient) -> None:
    client.post({"Content-Type": "text/plain"}, b"x")
    assert client.spans() == []
    assert (
        client.metric("cascade_requests_rejected_total", {"function": "probe", "status": "400"})
        == 1
    )

"""§8.1 headers on delivery and §7.1 trace propagation."""

from __future__ import annotations

import pytest

from tests.conformance.conftest import StartBroker
from tests.conformance.harness import (
    Answer,
    BrokerProcess,
    Received,
    Subscriber,
    broker_manifest,
    ce_headers,
    trigger_manifest,
    wait_for_event,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
CE_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# What HTTP libraries add by themselves (not Knative behaviour, §8.1) plus the framing headers.
TRANSPORT = {"host", "content-length", "user-agent", "accept", "accept-encoding"}


def ask_answer(received: Received) -> Answer:
    if received.ce["type"] == "trace.ask":
        return Answer(
            200,
            {
                "ce-specversion": "1.0",
                "ce-id": f"{received.ce['id']}-r",
                "ce-source": "/replier",
                "ce-type": "trace.reply",
            },
        )
    return Answer(204)


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    subscriber.program("/plain", then=Answer(204))
    subscriber.program("/ask", then=ask_answer)
    fails_once: set[str] = set()

    def retry_answer(received: Received) -> Answer:
        if received.ce["id"] not in fails_once:
            fails_once.add(received.ce["id"])
            return Answer(503)
        return Answer(200)

    subscriber.program("/retry", then=retry_answer)
    return start_broker(
        [
            broker_manifest(),
            trigger_manifest(
                "plain", subscriber.url("/plain?q=1"), filters=[{"exact": {"type": "plain"}}]
            ),
            trigger_manifest(
                "ask", subscriber.url("/ask"), filters=[{"exact": {"type": "trace.ask"}}]
            ),
            trigger_manifest(
                "replies", subscriber.url("/replies"), filters=[{"exact": {"type": "trace.reply"}}]
            ),
            trigger_manifest(
                "retry",
                subscriber.url("/retry"),
                filters=[{"exact": {"type": "retry"}}],
                delivery={"retry": 1, "backoffDelay": "PT0.01S"},
            ),
        ]
    )


def send(broker: BrokerProcess, event_id: str, event_type: str, **headers: str) -> None:
    reply = broker.send({**ce_headers(event_id, event_type), **headers}, b"data")
    assert reply.status == 202


def traceparent_parts(value: str) -> tuple[str, str, str]:
    version, trace_id, parent_id, flags = value.split("-")
    assert version == "00"
    return trace_id, parent_id, flags


def test_exactly_the_knative_headers_are_sent(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    producer = {
        "Authorization": "Bearer secret",
        "X-Request-Id": "req-1",
        "X-Custom": "c",
        "Knative-Foo": "f",
        "Cookie": "a=b",
        "User-Agent": "producer-agent",
        "ce-subject": "sub",
        "ce-myext": "x",
        "Content-Type": "text/plain",
    }
    send(broker, "hdr-1", "plain", **producer)
    received = wait_for_event(subscriber, "/plain?q=1", "hdr-1")
    names = set(received.headers)
    ce = {name for name in names if name.startswith("ce-")}
    assert ce == {
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-subject",
        "ce-myext",
        "ce-knativekafkapartition",
        "ce-knativekafkaoffset",
    }
    assert names - ce - TRANSPORT == {"content-type", "prefer", "kn-namespace"}
    assert received.headers["content-type"] == "text/plain"
    assert received.headers["prefer"] == "reply"
    assert received.headers["kn-namespace"] == "conformance"
    assert received.headers["user-agent"] != "producer-agent"
    assert received.body == b"data"


def test_no_content_type_without_datacontenttype(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    send(broker, "hdr-2", "plain")
    received = wait_for_event(subscriber, "/plain?q=1", "hdr-2")
    assert "content-type" not in received.headers
    assert "ce-datacontenttype" not in received.headers


def test_no_trace_context_in_means_none_out(broker: BrokerProcess, subscriber: Subscriber) -> None:
    send(broker, "trace-none", "trace.ask")
    delivered = wait_for_event(subscriber, "/ask", "trace-none")
    reply = wait_for_event(subscriber, "/replies", "trace-none-r")
    for received in (delivered, reply):
        assert "traceparent" not in received.headers
        assert "tracestate" not in received.headers


def test_traceparent_keeps_the_trace_with_a_new_parent(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    send(broker, "trace-1", "trace.ask", traceparent=TRACEPARENT, tracestate="vendor=abc")
    delivered = wait_for_event(subscriber, "/ask", "trace-1")
    trace_id, parent_id, flags = traceparent_parts(delivered.headers["traceparent"])
    assert trace_id == TRACE_ID
    assert parent_id != PARENT_ID  # the broker's delivery span
    assert flags == "01"
    assert delivered.headers["tracestate"] == "vendor=abc"
    assert "ce-traceparent" not in delivered.headers  # never turned into an extension

    # The reply is produced inside the delivery span: same trace, another hop.
    reply = wait_for_event(subscriber, "/replies", "trace-1-r")
    reply_trace, reply_parent, _ = traceparent_parts(reply.headers["traceparent"])
    assert reply_trace == TRACE_ID
    assert reply_parent not in (PARENT_ID, parent_id)


def test_each_attempt_is_its_own_span(broker: BrokerProcess, subscriber: Subscriber) -> None:
    send(broker, "trace-retry", "retry", traceparent=TRACEPARENT)
    first, second = subscriber.wait_for("/retry", 2)
    first_trace, first_parent, _ = traceparent_parts(first.headers["traceparent"])
    second_trace, second_parent, _ = traceparent_parts(second.headers["traceparent"])
    assert first_trace == second_trace == TRACE_ID
    assert first_parent != second_parent


def test_the_cloudevents_traceparent_extension_passes_untouched(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    send(
        broker,
        "ce-trace",
        "plain",
        **{"ce-traceparent": CE_TRACEPARENT, "traceparent": TRACEPARENT},
    )
    received = wait_for_event(subscriber, "/plain?q=1", "ce-trace")
    assert received.ce["traceparent"] == CE_TRACEPARENT
    assert traceparent_parts(received.headers["traceparent"])[0] == TRACE_ID

"""§4 Dead-letter sink: extensions, headers, a failing or missing sink, the sink's CE answer."""

from __future__ import annotations

import base64

import pytest

from tests.conformance.conftest import StartBroker
from tests.conformance.harness import (
    Answer,
    BrokerProcess,
    Subscriber,
    broker_manifest,
    metric_value,
    trigger_manifest,
    wait_for_event,
)

FAST = {"backoffPolicy": "linear", "backoffDelay": "PT0.01S"}
BODY = bytes(range(256)) * 6  # 1536 bytes, not text


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    subscriber.program(
        "/fails",
        then=Answer(500, {"Kne-Reason": "out of stock", "KNE-Shelf": "B7", "X-Other": "x"}, BODY),
    )
    subscriber.program("/fails-quietly", then=Answer(422))
    subscriber.program("/bad-sink", then=Answer(503))
    subscriber.program("/no-sink-sub", then=Answer(400))
    subscriber.program(
        "/answering-sink",
        then=Answer(
            200,
            {
                "ce-specversion": "1.0",
                "ce-id": "from-sink",
                "ce-source": "/sink",
                "ce-type": "sink.answer",
            },
        ),
    )
    return start_broker(
        [
            broker_manifest(),
            trigger_manifest(
                "dls",
                subscriber.url("/fails"),
                filters=[{"exact": {"type": "dls"}}],
                delivery={"retry": 1, **FAST, "deadLetterSink": {"uri": subscriber.url("/sink")}},
            ),
            trigger_manifest(
                "quiet",
                subscriber.url("/fails-quietly"),
                filters=[{"exact": {"type": "quiet"}}],
                delivery={"deadLetterSink": {"uri": subscriber.url("/sink")}},
            ),
            trigger_manifest(
                "sink-fails",
                subscriber.url("/fails-quietly"),
                filters=[{"exact": {"type": "sink-fails"}}],
                delivery={
                    "retry": 1,
                    **FAST,
                    "deadLetterSink": {"uri": subscriber.url("/bad-sink")},
                },
                ordered=True,
            ),
            trigger_manifest(
                "no-sink",
                subscriber.url("/no-sink-sub"),
                filters=[{"exact": {"type": "no-sink"}}],
                ordered=True,
            ),
            trigger_manifest(
                "answered",
                subscriber.url("/fails-quietly"),
                filters=[{"exact": {"type": "answered"}}],
                delivery={"deadLetterSink": {"uri": subscriber.url("/answering-sink")}},
            ),
            trigger_manifest(
                "sink-answers",
                subscriber.url("/sink-answers"),
                filters=[{"exact": {"type": "sink.answer"}}],
            ),
        ]
    )


def test_failed_event_carries_the_error_extensions(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("dls-1", "dls", body="original data", partitionkey="k1")
    dead = wait_for_event(subscriber, "/sink", "dls-1")
    assert dead.ce["knativeerrordest"] == subscriber.url("/fails")
    assert dead.ce["knativeerrorcode"] == "500"
    assert base64.b64decode(dead.ce["knativeerrordata"], validate=True) == BODY[:1024]
    assert dead.ce["reason"] == "out of stock"  # from Kne-Reason
    assert dead.ce["shelf"] == "B7"  # from KNE-Shelf: prefix matched case-insensitively
    assert "other" not in dead.ce
    # Everything of the original stays: attributes, extensions, data.
    assert dead.ce["type"] == "dls"
    assert dead.ce["partitionkey"] == "k1"
    assert dead.body == b"original data"


def test_sink_gets_the_delivery_headers(broker: BrokerProcess, subscriber: Subscriber) -> None:
    broker.publish("dls-2", "dls")
    dead = wait_for_event(subscriber, "/sink", "dls-2")
    assert dead.headers["prefer"] == "reply"
    assert dead.headers["kn-namespace"] == "conformance"
    assert "knativekafkapartition" in dead.ce
    assert "knativekafkaoffset" in dead.ce


def test_empty_failure_body_gives_code_without_data(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("quiet-1", "quiet")
    dead = wait_for_event(subscriber, "/sink", "quiet-1")
    assert dead.ce["knativeerrorcode"] == "422"
    assert "knativeerrordata" not in dead.ce


def test_a_failing_sink_drops_the_event_and_the_cursor_moves_on(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    # Ordered and keyed: the second event would wait forever if the first one blocked.
    broker.publish("sink-fails-1", "sink-fails", partitionkey="same")
    broker.publish("sink-fails-2", "sink-fails", partitionkey="same")
    wait_for_event(subscriber, "/fails-quietly", "sink-fails-2")
    broker.wait_idle()
    sink_attempts = [r for r in subscriber.received("/bad-sink") if r.ce["id"] == "sink-fails-1"]
    assert len(sink_attempts) == 2  # the sink is retried with the same policy
    dropped = metric_value(
        broker.metrics(), "cascade_broker_deliveries_total", trigger="sink-fails", outcome="dropped"
    )
    assert dropped == 2


def test_no_sink_drops_the_event_and_the_cursor_moves_on(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("no-sink-1", "no-sink", partitionkey="same")
    broker.publish("no-sink-2", "no-sink", partitionkey="same")
    wait_for_event(subscriber, "/no-sink-sub", "no-sink-2")
    broker.wait_idle()
    dropped = metric_value(
        broker.metrics(), "cascade_broker_deliveries_total", trigger="no-sink", outcome="dropped"
    )
    assert dropped == 2


def test_a_sinks_cloudevent_answer_is_published(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("answered-1", "answered")
    wait_for_event(subscriber, "/answering-sink", "answered-1")
    answer = wait_for_event(subscriber, "/sink-answers", "from-sink")
    assert answer.ce["type"] == "sink.answer"
    metrics = broker.metrics()
    assert (
        metric_value(
            metrics, "cascade_broker_deliveries_total", trigger="answered", outcome="dead-lettered"
        )
        == 1
    )

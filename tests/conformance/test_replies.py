"""§5 Replies: detection on any 2xx, routing to every matching Trigger, malformed answers, hops."""

from __future__ import annotations

import itertools

import orjson
import pytest

from cascade.broker.log.partitioner import partition_for_key
from tests.conformance.conftest import StartBroker
from tests.conformance.harness import (
    Answer,
    BrokerProcess,
    Received,
    Subscriber,
    broker_manifest,
    metric_value,
    service_manifest,
    trigger_manifest,
    wait_for_event,
)

MAX_EVENT_BYTES = 4096


def ce_reply(event_id: str, event_type: str, status: int = 200, **extra: str) -> Answer:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/replier",
        "ce-type": event_type,
        **{f"ce-{k}": v for k, v in extra.items()},
    }
    return Answer(status, headers)


def by_subject(received: Received) -> Answer:
    """The subscriber answers according to the event's subject."""
    subject = received.ce.get("subject", "")
    event_id = received.ce["id"]
    if subject == "reply-200":
        return ce_reply(f"{event_id}-r", "reply.made")
    if subject == "reply-202":
        return ce_reply(f"{event_id}-r", "reply.made", status=202)
    if subject == "structured":
        document = {
            "specversion": "1.0",
            "id": f"{event_id}-r",
            "source": "/replier",
            "type": "reply.made",
            "datacontenttype": "application/json",
            "data": {"answer": 42},
        }
        return Answer(200, {"Content-Type": "application/cloudevents+json"}, orjson.dumps(document))
    if subject == "empty-204":
        return Answer(204)
    if subject == "malformed":
        return Answer(200, {"Content-Type": "application/json"}, b'{"ok": true}')
    if subject == "big":
        return Answer(
            200,
            {
                "ce-specversion": "1.0",
                "ce-id": f"{event_id}-r",
                "ce-source": "/replier",
                "ce-type": "reply.made",
            },
            b"x" * (MAX_EVENT_BYTES * 3),
        )
    if subject == "keyed":
        return ce_reply(f"{event_id}-r", "reply.made", partitionkey="reply-key")
    raise AssertionError(f"unexpected subject {subject!r}")


def self_replier(received: Received) -> Answer:
    if received.ce["type"] == "self.start":
        return ce_reply(f"{received.ce['id']}-r", "self.reply")
    return Answer(204)


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    subscriber.program("/answers", then=by_subject)
    subscriber.program("/self", then=self_replier)
    return start_broker(
        [
            broker_manifest(),
            service_manifest("selfsvc", subscriber.url("/self"), reply_types=["self.reply"]),
            trigger_manifest(
                "answers",
                subscriber.url("/answers"),
                filters=[{"exact": {"type": "ask"}}],
                delivery={
                    "retry": 3,
                    "backoffDelay": "PT0.01S",
                    "deadLetterSink": {"uri": subscriber.url("/answers-dls")},
                },
            ),
            trigger_manifest(
                "replies", subscriber.url("/replies"), filters=[{"exact": {"type": "reply.made"}}]
            ),
            trigger_manifest(
                "self", "", subscriber_ref="selfsvc", filters=[{"prefix": {"type": "self."}}]
            ),
        ],
        args=["--max-event-bytes", str(MAX_EVENT_BYTES)],
    )


@pytest.mark.parametrize("subject", ["reply-200", "reply-202"])
def test_a_cloudevent_answer_on_any_2xx_is_a_reply(
    broker: BrokerProcess, subscriber: Subscriber, subject: str
) -> None:
    broker.publish(f"ask-{subject}", "ask", subject=subject)
    reply = wait_for_event(subscriber, "/replies", f"ask-{subject}-r")
    assert reply.ce["type"] == "reply.made"
    assert reply.ce["source"] == "/replier"
    assert "cascadehops" not in reply.ce  # no loop guard unless asked for


def test_a_structured_reply_is_stored_and_delivered_in_binary(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("ask-structured", "ask", subject="structured")
    reply = wait_for_event(subscriber, "/replies", "ask-structured-r")
    assert reply.headers["content-type"] == "application/json"
    assert orjson.loads(reply.body) == {"answer": 42}


def test_an_empty_answer_is_plain_success(broker: BrokerProcess, subscriber: Subscriber) -> None:
    broker.publish("ask-empty", "ask", subject="empty-204")
    broker.wait_idle()
    assert [r.ce["id"] for r in subscriber.received("/answers")].count("ask-empty") == 1
    assert not [r for r in subscriber.received("/answers-dls") if r.ce["id"] == "ask-empty"]
    assert not [r for r in subscriber.received("/replies") if r.ce["id"].startswith("ask-empty")]


def test_a_malformed_answer_goes_to_the_sink_without_retry(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("ask-malformed", "ask", subject="malformed")
    dead = wait_for_event(subscriber, "/answers-dls", "ask-malformed")
    added = {k for k in dead.ce if k.startswith("knativeerror")}
    assert added == {"knativeerrordest"}
    assert [r.ce["id"] for r in subscriber.received("/answers")].count("ask-malformed") == 1


def test_a_reply_skips_the_ingress_size_check(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("ask-big", "ask", subject="big")
    reply = wait_for_event(subscriber, "/replies", "ask-big-r")
    assert len(reply.body) == MAX_EVENT_BYTES * 3


def test_a_reply_keeps_its_partition_key(broker: BrokerProcess, subscriber: Subscriber) -> None:
    broker.publish("ask-keyed", "ask", subject="keyed")
    reply = wait_for_event(subscriber, "/replies", "ask-keyed-r")
    assert reply.ce["partitionkey"] == "reply-key"
    assert reply.ce["knativekafkapartition"] == str(partition_for_key("reply-key", 10))


def test_a_reply_reaches_the_trigger_that_produced_it(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("self-1", "self.start")
    wait_for_event(subscriber, "/self", "self-1-r")
    types = [r.ce["type"] for r in subscriber.received("/self")]
    assert types[:2] == ["self.start", "self.reply"]


def test_a_loop_risk_is_warned_about_at_start(broker: BrokerProcess) -> None:
    output = broker.output()
    assert "conformance/self" in output
    assert "--max-hops" in output


@pytest.fixture(scope="module")
def looping(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    counter = itertools.count()
    subscriber.program("/loop", then=lambda r: ce_reply(f"loop-{next(counter)}", "loop.event"))
    return start_broker(
        [
            broker_manifest(),
            service_manifest("looper", subscriber.url("/loop"), reply_types=["loop.event"]),
            trigger_manifest(
                "loop", "", subscriber_ref="looper", filters=[{"exact": {"type": "loop.event"}}]
            ),
        ],
        args=["--max-hops", "3"],
    )


def test_max_hops_stops_a_reply_loop(looping: BrokerProcess, subscriber: Subscriber) -> None:
    looping.publish("loop-start", "loop.event")
    subscriber.wait_for("/loop", 4)
    looping.wait_idle()
    received = subscriber.received("/loop")
    assert len(received) == 4  # the produced event and 3 replies; the 4th reply is dropped
    assert [r.ce.get("cascadehops") for r in received] == [None, "1", "2", "3"]
    dropped = metric_value(
        looping.metrics(), "cascade_broker_deliveries_total", trigger="loop", outcome="dropped"
    )
    assert dropped == 1
    assert "--max-hops" in looping.output()

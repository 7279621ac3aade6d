"""§3 Delivery: classification of answers, retries, backoff growth, timeout, spec precedence."""

from __future__ import annotations

import base64

import pytest

from tests.conformance.conftest import StartBroker
from tests.conformance.harness import (
    Answer,
    BrokerProcess,
    Received,
    Subscriber,
    broker_manifest,
    free_port,
    metric_value,
    trigger_manifest,
    wait_for_event,
)

RETRYABLE = [500, 502, 503, 404, 408, 409, 429]
PERMANENT = [400, 401, 403, 405, 410, 413, 415, 422, 301]
SUCCESS = [200, 201, 202, 204]
FAST = {"backoffPolicy": "linear", "backoffDelay": "PT0.01S"}


def only(event_type: str) -> list[dict[str, object]]:
    return [{"exact": {"type": event_type}}]


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    # /classify answers every attempt with the status named in the event's subject.
    subscriber.program("/classify", then=lambda r: Answer(int(r.ce["subject"])))
    subscriber.program("/exp", then=Answer(503))
    subscriber.program("/lin", then=Answer(503))
    subscriber.program("/inherit", then=Answer(500))
    subscriber.program("/own", then=Answer(500))
    subscriber.program("/timeout", Answer(200, delay=3.0), then=Answer(200))
    subscriber.program("/retry-after", Answer(503, {"Retry-After": "30"}), then=Answer(200))
    closed = f"http://127.0.0.1:{free_port()}/nobody"
    triggers = [
        trigger_manifest(
            "classify",
            subscriber.url("/classify"),
            filters=only("classify"),
            delivery={
                "retry": 2,
                **FAST,
                "deadLetterSink": {"uri": subscriber.url("/classify-dls")},
            },
        ),
        trigger_manifest(
            "refused",
            closed,
            filters=only("refused"),
            delivery={
                "retry": 2,
                **FAST,
                "deadLetterSink": {"uri": subscriber.url("/refused-dls")},
            },
        ),
        trigger_manifest(
            "exp",
            subscriber.url("/exp"),
            filters=only("exp"),
            delivery={"retry": 3, "backoffPolicy": "exponential", "backoffDelay": "PT0.15S"},
        ),
        trigger_manifest(
            "lin",
            subscriber.url("/lin"),
            filters=only("lin"),
            delivery={"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.3S"},
        ),
        trigger_manifest(
            "timeout",
            subscriber.url("/timeout"),
            filters=only("timeout"),
            delivery={
                "retry": 1,
                **FAST,
                "timeout": "PT0.3S",
                "deadLetterSink": {"uri": subscriber.url("/timeout-dls")},
            },
        ),
        trigger_manifest(
            "retry-after",
            subscriber.url("/retry-after"),
            filters=only("retry-after"),
            delivery={"retry": 1, "backoffDelay": "PT0.05S"},
        ),
        # No delivery of its own: the Broker's applies (retry 3).
        trigger_manifest("inherit", subscriber.url("/inherit"), filters=only("inherit")),
        # Only a sink: the whole Trigger spec wins, so zero retries (§3.2).
        trigger_manifest(
            "own",
            subscriber.url("/own"),
            filters=only("own"),
            delivery={"deadLetterSink": {"uri": subscriber.url("/own-dls")}},
        ),
    ]
    broker_delivery = {"retry": 3, **FAST, "deadLetterSink": {"uri": subscriber.url("/broker-dls")}}
    return start_broker([broker_manifest(delivery=broker_delivery), *triggers])


def attempts(subscriber: Subscriber, path: str, event_id: str) -> list[Received]:
    return [r for r in subscriber.received(path) if r.ce.get("id") == event_id]


@pytest.fixture(scope="module")
def classified(broker: BrokerProcess, subscriber: Subscriber) -> BrokerProcess:
    for status in RETRYABLE + PERMANENT + SUCCESS:
        broker.publish(f"status-{status}", "classify", subject=str(status))
    broker.wait_idle()
    return broker


@pytest.mark.parametrize("status", RETRYABLE)
def test_retryable_status_is_retried_then_dead_lettered(
    classified: BrokerProcess, subscriber: Subscriber, status: int
) -> None:
    assert len(attempts(subscriber, "/classify", f"status-{status}")) == 3  # 1 + retry
    dead = wait_for_event(subscriber, "/classify-dls", f"status-{status}")
    assert dead.ce["knativeerrorcode"] == str(status)


@pytest.mark.parametrize("status", PERMANENT)
def test_other_failures_go_to_the_sink_without_retry(
    classified: BrokerProcess, subscriber: Subscriber, status: int
) -> None:
    assert len(attempts(subscriber, "/classify", f"status-{status}")) == 1
    dead = wait_for_event(subscriber, "/classify-dls", f"status-{status}")
    assert dead.ce["knativeerrorcode"] == str(status)


@pytest.mark.parametrize("status", SUCCESS)
def test_2xx_is_success(classified: BrokerProcess, subscriber: Subscriber, status: int) -> None:
    assert len(attempts(subscriber, "/classify", f"status-{status}")) == 1
    assert not attempts(subscriber, "/classify-dls", f"status-{status}")


def test_connection_refused_is_retried_and_dead_lettered_with_dest_only(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("refused-1", "refused")
    dead = wait_for_event(subscriber, "/refused-dls", "refused-1")
    assert dead.ce["knativeerrordest"].endswith("/nobody")
    assert "knativeerrorcode" not in dead.ce
    assert "knativeerrordata" not in dead.ce
    broker.wait_idle()
    retried = metric_value(
        broker.metrics(), "cascade_broker_deliveries_total", trigger="refused", outcome="retried"
    )
    assert retried == 2


def gaps(received: list[Received]) -> list[float]:
    times = [r.at for r in received]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_exponential_backoff_doubles(broker: BrokerProcess, subscriber: Subscriber) -> None:
    broker.publish("exp-1", "exp")
    got = subscriber.wait_for("/exp", 4)
    waits = gaps(got)  # d*2^n with d = 0.15 s: 0.3, 0.6, 1.2
    assert len(waits) == 3
    for earlier, later in zip(waits, waits[1:], strict=False):
        assert 1.4 < later / earlier < 2.8, waits


def test_linear_backoff_grows_by_the_delay(broker: BrokerProcess, subscriber: Subscriber) -> None:
    broker.publish("lin-1", "lin")
    got = subscriber.wait_for("/lin", 4)
    waits = gaps(got)  # d*n with d = 0.3 s: 0.3, 0.6, 0.9
    assert 1.5 < waits[1] / waits[0] < 2.6, waits
    assert 1.2 < waits[2] / waits[1] < 1.9, waits


def test_timeout_is_a_retryable_transport_error(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("timeout-1", "timeout")
    got = subscriber.wait_for("/timeout", 2)
    assert [r.ce["id"] for r in got] == ["timeout-1", "timeout-1"]
    broker.wait_idle()
    assert not subscriber.received("/timeout-dls")


def test_retry_after_is_ignored(broker: BrokerProcess, subscriber: Subscriber) -> None:
    broker.publish("retry-after-1", "retry-after")
    first, second = subscriber.wait_for("/retry-after", 2)
    assert second.at - first.at < 10  # the answer asked for 30 s


def test_a_trigger_without_delivery_uses_the_brokers(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("inherit-1", "inherit")
    dead = wait_for_event(subscriber, "/broker-dls", "inherit-1")
    assert len(attempts(subscriber, "/inherit", "inherit-1")) == 4
    assert dead.ce["knativeerrorcode"] == "500"


def test_a_trigger_delivery_replaces_the_brokers_whole(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    broker.publish("own-1", "own")
    wait_for_event(subscriber, "/own-dls", "own-1")
    assert len(attempts(subscriber, "/own", "own-1")) == 1
    assert not attempts(subscriber, "/broker-dls", "own-1")


def test_error_data_is_base64_of_the_body(broker: BrokerProcess, subscriber: Subscriber) -> None:
    subscriber.program("/classify", then=lambda r: Answer(int(r.ce["subject"]), body=b"\x00nope"))
    broker.publish("status-body", "classify", subject="422")
    dead = wait_for_event(subscriber, "/classify-dls", "status-body")
    assert base64.b64decode(dead.ce["knativeerrordata"]) == b"\x00nope"

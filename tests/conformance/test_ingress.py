"""§1 Broker ingress: status codes and their order, content modes, validation, size limit."""

from __future__ import annotations

import json
import socket

import orjson
import pytest

from tests.conformance.conftest import StartBroker
from tests.conformance.harness import (
    BrokerProcess,
    Subscriber,
    broker_manifest,
    ce_headers,
    trigger_manifest,
    wait_for_event,
)

MAX_EVENT_BYTES = 4096
PATH = "/conformance/default"


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    return start_broker(
        [broker_manifest(), trigger_manifest("all", subscriber.url("/all"))],
        args=["--max-event-bytes", str(MAX_EVENT_BYTES)],
    )


def test_stored_event_gets_202_with_empty_body(broker: BrokerProcess) -> None:
    reply = broker.send(ce_headers("accepted"), b"x")
    assert reply.status == 202
    assert reply.body == b""


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405_without_body(broker: BrokerProcess, method: str) -> None:
    reply = broker.send(ce_headers("m"), b"", method=method)
    assert reply.status == 405
    assert reply.body == b""
    assert "allow" not in reply.headers  # unlike the MT broker's OPTIONS answer


def test_405_comes_before_404(broker: BrokerProcess) -> None:
    assert broker.send({}, path="/no/such-broker", method="GET").status == 405


@pytest.mark.parametrize(
    "path", ["/conformance/nope", "/", "/conformance", "/conformance/default/x", "/other/default"]
)
def test_unknown_path_is_404_even_with_an_invalid_body(broker: BrokerProcess, path: str) -> None:
    reply = broker.send({"Content-Type": "application/json"}, b"{not json", path=path)
    assert reply.status == 404
    assert reply.body == b""


def test_one_trailing_slash_is_stripped(broker: BrokerProcess) -> None:
    assert broker.send(ce_headers("slash"), path=PATH + "/").status == 202
    assert broker.send(ce_headers("slash2"), path=PATH + "//").status == 404


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Content-Type": "application/json"}, b'{"id": "1"}'),
        ({}, b"plain body"),
        ({"Content-Type": "application/cloudevents-batch+json"}, b"[]"),
        (
            {"Content-Type": "application/cloudevents+json"},
            b'{"specversion": "1.0", "source": "/s", "type": "t"}',
        ),
        ({"Content-Type": "application/cloudevents+json"}, b"{broken"),
    ],
    ids=["json-without-ce", "no-headers", "batch", "structured-without-id", "structured-broken"],
)
def test_not_a_cloudevent_is_400(
    broker: BrokerProcess, headers: dict[str, str], body: bytes
) -> None:
    reply = broker.send(headers, body)
    assert reply.status == 400
    assert reply.body == b""


@pytest.mark.parametrize("missing", ["ce-id", "ce-source", "ce-type"])
def test_missing_required_attribute_is_400(broker: BrokerProcess, missing: str) -> None:
    headers = ce_headers("missing")
    del headers[missing]
    reply = broker.send(headers)
    assert reply.status == 400
    assert missing[3:] in reply.headers.get("cascade-error", "")  # the reason is named


@pytest.mark.parametrize(
    "extra",
    [
        {"ce-source": "not a uri"},
        {"ce-time": "2024-13-45T00:00:00Z"},
        {"ce-time": "yesterday"},
        {"ce-specversion": "0.2"},
        {"ce-specversion": "2.0"},
        {"ce-dataschema": "bad uri"},
    ],
)
def test_malformed_attribute_is_400(broker: BrokerProcess, extra: dict[str, str]) -> None:
    assert broker.send({**ce_headers("bad"), **extra}).status == 400


def test_event_over_the_size_limit_is_503(broker: BrokerProcess) -> None:
    assert broker.send(ce_headers("big"), b"x" * (MAX_EVENT_BYTES + 1)).status == 503
    # The limit counts attributes too, as Kafka's max.request.size does.
    near = MAX_EVENT_BYTES - 50
    assert broker.send(ce_headers("big2", subject="s" * 100), b"x" * near).status == 503
    assert broker.send(ce_headers("small"), b"x" * (MAX_EVENT_BYTES // 2)).status == 202


def test_binary_body_bytes_are_delivered_untouched(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    body = b'{ "spaced" :  true ,\n "raw": "\xff\xfe" }  \n'
    reply = broker.send(ce_headers("binary-bytes", content_type="application/json"), body)
    assert reply.status == 202
    received = wait_for_event(subscriber, "/all", "binary-bytes")
    assert received.body == body
    assert received.headers["content-type"] == "application/json"


def test_nothing_is_added_at_ingress(broker: BrokerProcess, subscriber: Subscriber) -> None:
    broker.publish("plain-id")
    received = wait_for_event(subscriber, "/all", "plain-id")
    added_by_dispatcher = {"knativekafkapartition", "knativekafkaoffset"}
    assert set(received.ce) - added_by_dispatcher == {"specversion", "id", "source", "type"}
    assert "time" not in received.ce
    assert "knativearrivaltime" not in received.ce


def test_structured_input_is_delivered_in_binary_mode(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    document = {
        "specversion": "1.0",
        "id": "structured-1",
        "source": "/structured",
        "type": "com.example.structured",
        "datacontenttype": "application/json",
        "subject": "s-1",
        "myext": "v",
        "data": {"order": 7, "items": ["a", "b"]},
    }
    reply = broker.send(
        {"Content-Type": "application/cloudevents+json; charset=utf-8"},
        json.dumps(document).encode(),
    )
    assert reply.status == 202
    received = wait_for_event(subscriber, "/all", "structured-1")
    assert received.headers["content-type"] == "application/json"
    assert received.ce["subject"] == "s-1"
    assert received.ce["myext"] == "v"
    assert orjson.loads(received.body) == document["data"]
    assert "specversion" not in received.body.decode()  # not structured


def test_structured_base64_data_is_delivered_as_raw_bytes(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    document = {
        "specversion": "1.0",
        "id": "structured-b64",
        "source": "/s",
        "type": "t",
        "datacontenttype": "application/octet-stream",
        "data_base64": "AAEC/w==",
    }
    reply = broker.send({"Content-Type": "application/cloudevents+json"}, orjson.dumps(document))
    assert reply.status == 202
    received = wait_for_event(subscriber, "/all", "structured-b64")
    assert received.body == b"\x00\x01\x02\xff"


def test_a_03_event_is_stored_and_delivered_as_03(
    broker: BrokerProcess, subscriber: Subscriber
) -> None:
    reply = broker.send({**ce_headers("v03"), "ce-specversion": "0.3"}, b"old")
    assert reply.status == 202
    received = wait_for_event(subscriber, "/all", "v03")
    assert received.ce["specversion"] == "0.3"
    assert received.body == b"old"


def test_percent_encoded_values_survive(broker: BrokerProcess, subscriber: Subscriber) -> None:
    headers = {**ce_headers("pct"), "ce-subject": "caf%C3%A9%20%22quoted%22%20100%25"}
    assert broker.send(headers).status == 202
    received = wait_for_event(subscriber, "/all", "pct")
    assert received.headers["ce-subject"] == "caf%C3%A9%20%22quoted%22%20100%25"
    assert received.ce["subject"] == 'café "quoted" 100%'


def test_health_is_ready(broker: BrokerProcess) -> None:
    reply = broker.send({}, path="/-/health", method="GET")
    assert reply.status == 200
    assert json.loads(reply.body) == {"status": "ready"}


def test_expect_100_continue_is_answered(broker: BrokerProcess) -> None:
    """curl sends Expect: 100-continue for bodies over 1 KiB and waits for the interim answer."""
    body = b"x" * 2000
    head = "".join(f"{k}: {v}\r\n" for k, v in ce_headers("expect").items())
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{head}Expect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        assert sock.recv(100).startswith(b"HTTP/1.1 202")

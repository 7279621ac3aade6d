"""The publisher's transport seam: FunctionClient records what a function publishes, and any
SinkTransport sees the exact bytes the publisher would POST (retries included)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from cascade import Publisher, PublishError, Settings
from cascade.publish import SinkAnswer, SinkUnreachable
from cascade.testing import FunctionClient, RecordingTransport, discover
from tests.unit.testing.relay.contracts import Ping

RELAY = Path(__file__).parent / "relay"
PONGER = {found.name: found for found in discover(RELAY / "functions")}["ponger"].function


def test_a_function_client_records_what_a_route_publishes() -> None:
    with FunctionClient(PONGER) as client:
        result = client.request("POST", "/pings", json={"key": "k", "count": 2})
        assert result.status == 200, result.body
        published = client.published(Ping)
        assert [m.event(Ping) for m in published] == [Ping(key="k", n=0), Ping(key="k", n=1)]
        assert {(m.source, m.partitionkey) for m in published} == {("/ponger", "k")}
        assert "traceparent" in published[0].attributes  # set once, where it originates
        assert client.published("com.example.relay.pong") == []


def test_explicit_settings_without_a_sink_fail_as_in_production(tmp_path: Path) -> None:
    with FunctionClient(PONGER, Settings(data_dir=tmp_path)) as client:
        result = client.request("POST", "/pings", json={"key": "k", "count": 1})
        assert result.status == 500
        with pytest.raises(LookupError, match="RecordingTransport"):
            client.published()
    recorder = RecordingTransport()
    with FunctionClient(PONGER, Settings(data_dir=tmp_path), publish_transport=recorder) as c:
        assert c.request("POST", "/pings", json={"key": "k", "count": 1}).status == 200
    assert len(recorder.messages()) == 1  # readable after the client closed


class Scripted:
    """Answers from a script; keeps what it was sent."""

    def __init__(self, *answers: SinkAnswer | SinkUnreachable) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, dict[str, str], bytes]] = []

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> SinkAnswer:
        self.sent.append((url, dict(headers), body))
        answer = self.answers.pop(0)
        if isinstance(answer, SinkUnreachable):
            raise answer
        return answer

    def close(self) -> None:
        pass


def test_the_publisher_retries_through_the_transport_without_real_sleeps() -> None:
    waits: list[float] = []
    transport = Scripted(
        SinkUnreachable("refused"), SinkAnswer(503, {}, b"busy"), SinkAnswer(202, {}, b"")
    )
    with Publisher(
        "http://sink.test/", "/t", retries=2, sleep=waits.append, transport=transport
    ) as publisher:
        event_id = publisher.publish(Ping(key="k", n=1), partitionkey="k")
    assert len(transport.sent) == 3
    assert len(waits) == 2
    assert {headers["ce-id"] for _, headers, _ in transport.sent} == {event_id}
    url, headers, body = transport.sent[0]
    assert (url, headers["ce-type"], headers["ce-partitionkey"]) == (
        "http://sink.test/",
        "com.example.relay.ping",
        "k",
    )
    assert Ping.model_validate_json(body) == Ping(key="k", n=1)


def test_a_refusal_from_the_transport_is_not_retried() -> None:
    transport = Scripted(SinkAnswer(400, {}, b"no"))
    publisher = Publisher("http://sink.test/", "/t", retries=5, transport=transport)
    with pytest.raises(PublishError, match="refused") as caught:
        publisher.publish(Ping(key="k", n=1))
    assert (caught.value.status, caught.value.attempts) == (400, 1)


def test_the_recording_transport_refuses_what_is_not_a_cloudevent() -> None:
    recorder = RecordingTransport()
    answer = recorder.post("http://x/", {"Content-Type": "application/json"}, b"{}", 1.0)
    assert answer.status == 400
    assert b"specversion" in answer.body
    assert recorder.messages() == []

"""Issue 10, item 1 and row 3: a fault injected at every stage of one Trigger's egress (filter,
send, reading the answer, the hop count, storing the reply, building and sending the dead letter)
and the event still reaches the dead-letter sink, with a reason naming what failed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry

from cascade.broker.dispatch import egress as egress_module
from cascade.broker.dispatch import replies as replies_module
from cascade.broker.dispatch.delivery import HttpResponse, RetryPolicy
from cascade.broker.dispatch.egress import EgressConfig, TriggerEgress
from cascade.broker.dispatch.filters import MatchAll
from cascade.broker.dispatch.sender import AttemptTarget
from cascade.broker.event import Record, StoredEvent
from cascade.broker.telemetry.metrics import BrokerMetrics

SUBSCRIBER = "http://subscriber.test/"
SINK = "http://sink.test/"
EVENT = StoredEvent(
    {"specversion": "1.0", "id": "e-1", "source": "/s", "type": "t", "reason": "old"}, b"{}"
)
REPLY = HttpResponse(
    200,
    CIMultiDict({"ce-specversion": "1.0", "ce-id": "r-1", "ce-source": "/r", "ce-type": "r"}),
    b"",
)


class Boom(Exception):
    """The injected fault."""


@dataclass
class FakeSender:
    """Answers the subscriber with ``answer`` and records what the sink gets."""

    answer: HttpResponse = field(default_factory=lambda: REPLY)
    fail_subscriber: BaseException | None = None
    fail_sink_once: BaseException | None = None
    sunk: list[StoredEvent] = field(default_factory=list)

    async def send(
        self,
        target: AttemptTarget,
        event: StoredEvent,
        record_headers: Mapping[str, str],
        attempt: int,
        timeout: float,
    ) -> HttpResponse:
        if target.kind == "subscriber":
            if self.fail_subscriber is not None:
                raise self.fail_subscriber
            return self.answer
        if self.fail_sink_once is not None:
            fault, self.fail_sink_once = self.fail_sink_once, None
            raise fault
        self.sunk.append(event)
        return HttpResponse(202, CIMultiDict(), b"")


def run(sender: FakeSender, *, publish: Callable[..., Any] | None = None, **kw: Any) -> None:
    async def store(event: StoredEvent, headers: Mapping[str, str]) -> None:
        if publish is not None:
            publish(event)

    config = EgressConfig(
        namespace="ns",
        trigger="t",
        subscriber=SUBSCRIBER,
        filter=kw.pop("filter", MatchAll()),
        policy=RetryPolicy(0, lambda n: 0.0, 1.0),
        dead_letter_sink=SINK,
    )
    egress = TriggerEgress(
        config,
        sender.send,
        store,
        BrokerMetrics(CollectorRegistry()),
        **kw,
    )
    asyncio.run(egress.process(Record(0, 7, EVENT)))


def raise_boom(*args: object, **kwargs: object) -> Any:
    raise Boom("injected")


class FailingFilter:
    def matches(self, attributes: Mapping[str, str]) -> bool:
        raise Boom("injected in the filter")


def the_dead_letter(sender: FakeSender) -> StoredEvent:
    assert len(sender.sunk) == 1, "the event did not reach the dead-letter sink exactly once"
    dead = sender.sunk[0]
    assert dead.attributes["id"] == "e-1"
    assert dead.attributes["knativeerrordest"] == SUBSCRIBER
    return dead


def test_a_failing_filter_dead_letters() -> None:
    sender = FakeSender()
    run(sender, filter=FailingFilter())
    reason = the_dead_letter(sender).attributes["reason"]
    assert "filter" in reason
    assert "Boom" in reason


@pytest.mark.parametrize(
    "fault", [Boom("send"), UnicodeEncodeError("latin-1", "x", 0, 1, "bad"), RecursionError()]
)
def test_an_unexpected_error_while_sending_dead_letters(fault: BaseException) -> None:
    sender = FakeSender(fail_subscriber=fault)
    run(sender)
    assert "delivering to the subscriber" in the_dead_letter(sender).attributes["reason"]


def test_an_answer_that_cannot_be_read_dead_letters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replies_module, "event_from_http", raise_boom)
    sender = FakeSender(answer=HttpResponse(200, REPLY.headers, b"{}"))
    run(sender)
    assert "subscriber answered" in the_dead_letter(sender).attributes["reason"]


def test_a_failing_hop_count_dead_letters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egress_module, "with_hop", raise_boom)
    sender = FakeSender()
    run(sender, max_hops=3)
    assert "handling the subscriber's answer" in the_dead_letter(sender).attributes["reason"]


def test_a_reply_that_cannot_be_stored_dead_letters() -> None:
    sender = FakeSender()
    run(sender, publish=raise_boom)
    assert "could not be stored" in the_dead_letter(sender).attributes["reason"]


def test_a_dead_letter_that_cannot_be_built_is_still_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egress_module, "dead_letter_event", raise_boom)
    sender = FakeSender(answer=HttpResponse(500, CIMultiDict(), b"oops"))
    run(sender)
    assert "Boom" in the_dead_letter(sender).attributes["reason"]


def test_a_dead_letter_the_sink_cannot_be_sent_is_sent_made_safe() -> None:
    bad = HttpResponse(422, CIMultiDict({"Kne-Reason": "fine"}), b"no")
    sender = FakeSender(answer=bad, fail_sink_once=UnicodeEncodeError("latin-1", "x", 0, 1, "b"))
    run(sender)
    dead = the_dead_letter(sender)
    assert dead.attributes["reason"].startswith("fine (the sink could not be sent")
    assert dead.attributes["knativeerrorcode"] == "422"


def test_a_non_utf8_kne_header_is_kept_escaped() -> None:
    # The delivery client keeps undecodable header bytes as surrogate escapes.
    raw = b"caf\xe9 \x1b[2J".decode("utf-8", "surrogateescape")
    sender = FakeSender(answer=HttpResponse(422, CIMultiDict({"Kne-Reason": raw}), b""))
    run(sender)
    reason = the_dead_letter(sender).attributes["reason"]
    assert reason == "caf\\xe9 \\x1b[2J"
    reason.encode("utf-8")  # a valid attribute again

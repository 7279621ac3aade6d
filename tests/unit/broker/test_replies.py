"""What a 2xx answer means (§5.1) and the opt-in hop counter (§5.4)."""

from __future__ import annotations

import orjson
import pytest
from multidict import CIMultiDict

from cascade.broker.dispatch.delivery import HttpResponse
from cascade.broker.dispatch.replies import (
    HOPS_EXTENSION,
    AnswerKind,
    hops_of,
    interpret_answer,
    with_hop,
)
from cascade.broker.event import StoredEvent

CE = {"ce-specversion": "1.0", "ce-id": "r1", "ce-source": "/fn", "ce-type": "reply"}


def answer(status: int, headers: dict[str, str], body: bytes = b"") -> HttpResponse:
    return HttpResponse(status, CIMultiDict(headers), body)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_binary_ce_answer_is_a_reply_whatever_the_2xx(status: int) -> None:
    result = interpret_answer(answer(status, {**CE, "Content-Type": "text/plain"}, b"hi"))
    assert result.kind is AnswerKind.REPLY
    assert result.event is not None
    assert result.event.attributes["id"] == "r1"
    assert result.event.attributes["datacontenttype"] == "text/plain"
    assert result.event.data == b"hi"


def test_ce_headers_with_empty_body_is_a_reply_without_data() -> None:
    result = interpret_answer(answer(200, CE))
    assert result.kind is AnswerKind.REPLY
    assert result.event is not None
    assert result.event.data == b""


def test_structured_answer_is_a_reply() -> None:
    body = orjson.dumps({"specversion": "1.0", "id": "r", "source": "/s", "type": "x", "data": 1})
    result = interpret_answer(answer(200, {"Content-Type": "application/cloudevents+json"}, body))
    assert result.kind is AnswerKind.REPLY


@pytest.mark.parametrize(
    "headers", [{}, {"Content-Type": "application/json"}, {"ce-specversion": "1.0", "ce-id": "x"}]
)
def test_empty_non_event_answer_is_plain_success(headers: dict[str, str]) -> None:
    assert interpret_answer(answer(200, headers)).kind is AnswerKind.NO_REPLY


def test_non_empty_non_event_answer_is_malformed() -> None:
    result = interpret_answer(answer(200, {"Content-Type": "application/json"}, b'{"ok":true}'))
    assert result.kind is AnswerKind.MALFORMED
    assert result.problem


def test_hops_count_up_from_the_answered_event() -> None:
    produced = StoredEvent({"id": "1"})
    reply = StoredEvent({"id": "2", HOPS_EXTENSION: "40"})  # a reply echoing junk is overridden
    first = with_hop(reply, produced)
    assert hops_of(first) == 1
    assert hops_of(with_hop(reply, first)) == 2
    assert hops_of(StoredEvent({HOPS_EXTENSION: "nonsense"})) == 0

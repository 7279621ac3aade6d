"""What a successful (< 300) answer means for the broker (§5.1) and the opt-in hop limit (§5.4).

- A parseable CloudEvent (binary via ``ce-specversion``, or structured) is a reply, whatever the
  2xx status, 202 included. It goes straight to the log (no ingress checks, §5.2).
- No CloudEvent and an empty body: plain success.
- No CloudEvent and a non-empty body: the delivery failed; dead-letter without retry.

The Kafka class has no loop guard. ``--max-hops`` adds one, off by default: each reply carries
the extension ``cascadehops`` (the hops of the event it answers, plus one) and a reply beyond the
limit is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cascade.broker.dispatch.delivery import HttpResponse
from cascade.broker.event import StoredEvent
from cascade.broker.http.event import event_from_http
from cascade.codec import ContentMode, InvalidEvent, content_mode

__all__ = ["HOPS_EXTENSION", "Answer", "AnswerKind", "hops_of", "interpret_answer", "with_hop"]

HOPS_EXTENSION = "cascadehops"


class AnswerKind(Enum):
    NO_REPLY = "no-reply"
    REPLY = "reply"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Answer:
    kind: AnswerKind
    event: StoredEvent | None = None
    problem: str | None = None


def interpret_answer(response: HttpResponse) -> Answer:
    """Classify a 2xx answer as a reply, no reply, or a malformed reply (§5.1)."""
    headers = response.headers
    if "ce-specversion" not in headers and content_mode(headers.get("Content-Type")) is (
        ContentMode.BINARY
    ):
        # The common plain answer, decided without raising and catching an exception.
        if not response.body:
            return Answer(AnswerKind.NO_REPLY)
        return Answer(AnswerKind.MALFORMED, problem="a body without ce-specversion or a CE format")
    try:
        event = event_from_http(response.headers, response.body)
    except InvalidEvent as exc:
        if not response.body:
            return Answer(AnswerKind.NO_REPLY)
        return Answer(AnswerKind.MALFORMED, problem=str(exc))
    except Exception as exc:  # e.g. data nested past what the JSON codec handles
        return Answer(AnswerKind.MALFORMED, problem=f"{type(exc).__name__}: {exc}")
    return Answer(AnswerKind.REPLY, event)


def hops_of(event: StoredEvent) -> int:
    """Replies the event is away from an event a producer sent (0 when not counted)."""
    try:
        return max(0, int(event.attributes.get(HOPS_EXTENSION, "0")))
    except ValueError:
        return 0


def with_hop(reply: StoredEvent, answered: StoredEvent) -> StoredEvent:
    """``reply`` carrying one hop more than the event it answers."""
    attributes = dict(reply.attributes)
    attributes[HOPS_EXTENSION] = str(hops_of(answered) + 1)
    return StoredEvent(attributes, reply.data)

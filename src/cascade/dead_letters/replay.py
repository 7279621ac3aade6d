"""Replaying a dead letter: the protocol ``cascade dlq replay`` and the console share.

1. POST the original event, unchanged (same source and id, so the subscriber's dedupe
   recognises a copy it already handled) in binary mode to ``knativeerrordest``, with one
   extension added: ``cascadereplays`` (how many times it has now been replayed), and
   ``Prefer: reply``.
2. If the subscriber answers with a CloudEvent (its reply), POST the reply to the broker
   ingress: a reply to a direct POST does not re-enter the broker by itself, and the chain
   (e.g. payment.authorized → order confirmed) must continue.
3. ``POST /dead-letters/<id>/replayed`` counts the replay (whenever the subscriber answered).

An entry replayed ``max_replays`` times already is refused: a poison event would otherwise go
round for ever. A destination that is no subscriber of the broker's Triggers is refused unless
allowed (:mod:`.destinations`): nothing is sent to it, so no answer of an unknown place is ever
forwarded to the broker. Each replay is a trace of its own, linked to the trace the event
started in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from cascade.codec import STRUCTURED_CONTENT_TYPE, InvalidEvent, binary_headers, parse_headers
from cascade.commands._tracing import inject
from cascade.dead_letters.client import (
    MAX_LIST,
    DeadLetterClient,
    DeadLetterError,
    problem_text,
)
from cascade.dead_letters.destinations import KnownDestinations
from cascade.http_client import Answer, Unreachable, request
from cascade.runner.display import short_type
from cascade.telemetry.tracing import CONVERSATION_ID, origin_links, span_context_from_traceparent

__all__ = ["REPLAY_EXTENSION", "Replayer", "ReplayOutcome", "ReplayPlan", "replay_request"]

REPLAY_EXTENSION: Final = "cascadereplays"


@dataclass(frozen=True)
class ReplayOutcome:
    ok: bool
    message: str
    counted: bool = False


@dataclass(frozen=True)
class ReplayPlan:
    """What ``--all`` replays (oldest first) and why the others are left out."""

    ids: list[int]
    notes: list[str]


def replay_request(detail: Mapping[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """``(destination, headers, body)`` of the replay of one dead letter; DeadLetterError if
    there is none."""
    dest = detail.get("dest")
    if not isinstance(dest, str) or not dest:
        raise DeadLetterError("no knativeerrordest: nobody knows which subscriber it failed at")
    event = detail.get("event") or {}
    attributes = dict(event.get("attributes") or {})
    if not attributes.get("id") or not attributes.get("source"):
        raise DeadLetterError("the stored event has no id or source")
    try:
        body = base64.b64decode(event.get("data_base64") or "", validate=True)
    except (binascii.Error, ValueError):
        raise DeadLetterError("the stored data_base64 is not valid base64") from None
    attributes[REPLAY_EXTENSION] = str(int(detail.get("replay_count", 0)) + 1)
    headers = binary_headers(attributes)
    headers["Prefer"] = "reply"
    return dest, headers, body


def _ignore(message: str) -> None:
    del message


@dataclass
class Replayer:
    """Replays dead letters from ``client``'s sink; replies go to the broker ``ingress``.

    ``tracer`` (optional) records the replay spans; ``warn`` hears what does not fail a replay
    but should be seen (a replay that could not be counted, Triggers that could not be read).
    ``destinations``: where replays may go; unset, the broker's Triggers, learned (once) from
    the ``ingress``'s ``/-/triggers``."""

    client: DeadLetterClient
    ingress: str
    max_replays: int = 3
    tracer: trace.Tracer | None = None
    warn: Callable[[str], None] = field(default=_ignore)
    destinations: KnownDestinations | None = None

    def known(self) -> KnownDestinations:
        if self.destinations is None:
            self.destinations, problem = KnownDestinations.learn(
                self.ingress, timeout=self.client.timeout
            )
            if problem is not None:
                self.warn(f"warning: {problem}; nothing can be replayed but what is allowed")
        return self.destinations

    def plan_all(self) -> ReplayPlan:
        """Every entry with replays left and a destination (of the newest ``MAX_LIST``)."""
        entries = self.client.list(limit=MAX_LIST)
        notes: list[str] = []
        if len(entries) >= MAX_LIST:
            notes.append(
                f"note: only the newest {MAX_LIST} dead letters are listed; run again for older "
                "ones"
            )
        chosen: list[int] = []
        for entry in entries:
            if int(entry.get("replay_count", 0)) >= self.max_replays:
                notes.append(
                    f"skipping {entry.get('id')}: replayed {entry.get('replay_count')} times "
                    f"already (--max-replays {self.max_replays})"
                )
            elif not entry.get("dest"):
                notes.append(f"skipping {entry.get('id')}: no knativeerrordest to replay to")
            else:
                chosen.append(int(entry["id"]))
        return ReplayPlan(sorted(chosen), notes)  # oldest first, as they arrived

    def replay(self, dead_letter_id: int, *, dry_run: bool = False) -> ReplayOutcome:
        try:
            detail = self.client.show(dead_letter_id)
        except DeadLetterError as exc:
            return ReplayOutcome(False, str(exc))
        label = f"{short_type(detail.get('type'))} {detail.get('event_id')}"
        replays = int(detail.get("replay_count", 0))
        if replays >= self.max_replays:
            return ReplayOutcome(
                False,
                f"{label}: refused, replayed {replays} times already "
                f"(--max-replays {self.max_replays})",
            )
        try:
            dest, headers, body = replay_request(detail)
        except DeadLetterError as exc:
            return ReplayOutcome(False, f"{label}: {exc}")
        known = self.known()
        if not known.permits(dest):
            return ReplayOutcome(False, f"{label}: {known.refusal(dest)}")
        if dry_run:
            shown = "\n".join(f"    {name}: {value}" for name, value in headers.items())
            preview = body[:2000].decode("utf-8", errors="replace")
            return ReplayOutcome(True, f"{label}: would POST {dest}\n{shown}\n    body: {preview}")
        with self._replay_span(dead_letter_id, detail, headers, dest) as span:
            try:
                answer = request(
                    "POST", dest, headers=headers, body=body, timeout=self.client.timeout
                )
            except Unreachable as exc:
                _failed(span, str(exc))
                return ReplayOutcome(False, f"{label}: {exc}")
            if span is not None:
                span.set_attribute("http.response.status_code", answer.status)
            counted = self._count(dead_letter_id)
            if not answer.ok:
                _failed(span, f"{dest} answered {answer.status}")
                return ReplayOutcome(
                    False,
                    f"{label}: {dest} answered {answer.status}: {problem_text(answer)}"
                    + ("" if counted else " (replay not counted)"),
                )
            return self._forward_reply(label, dest, answer, counted, span)

    def _count(self, dead_letter_id: int) -> bool:
        try:
            self.client.count_replay(dead_letter_id)
        except DeadLetterError as exc:
            self.warn(f"warning: {dead_letter_id}: could not count the replay: {exc}")
            return False
        return True

    def _forward_reply(
        self, label: str, dest: str, answer: Answer, counted: bool, span: Span | None
    ) -> ReplayOutcome:
        if not _is_cloudevent(answer):
            return ReplayOutcome(
                True, f"{label}: {dest} answered {answer.status}, no reply", counted
            )
        try:
            reply = parse_headers(answer.headers, answer.body, wire="latin-1")
        except InvalidEvent as exc:
            return ReplayOutcome(
                False, f"{label}: {dest} answered {answer.status} with a broken reply: {exc.detail}"
            )
        headers = binary_headers(reply.attributes)
        # The reply continues the trace below the handler span that made it (the runtime names
        # it in its traceparent answer header), as the broker does with replies it stores.
        handler = answer.header("traceparent")
        with self._reply_span(span, handler, reply.attributes) as reply_span:
            if reply_span is not None:
                inject(headers, reply_span)
            elif handler is not None:
                headers["traceparent"] = handler
            try:
                posted = request(
                    "POST",
                    self.ingress,
                    headers=headers,
                    body=reply.data,
                    timeout=self.client.timeout,
                )
            except Unreachable as exc:
                _failed(reply_span, str(exc))
                return ReplayOutcome(
                    False, f"{label}: handled, but its reply {reply.type} was not posted: {exc}"
                )
            if reply_span is not None:
                reply_span.set_attribute("http.response.status_code", posted.status)
                if not posted.ok:
                    _failed(reply_span, f"the broker answered {posted.status}")
        if not posted.ok:
            return ReplayOutcome(
                False,
                f"{label}: handled, but the broker refused its reply {reply.type}: "
                f"{posted.status} {posted.header('Cascade-Error') or posted.text(200)}",
            )
        return ReplayOutcome(
            True,
            f"{label}: {dest} answered {answer.status}; reply {short_type(reply.type)} "
            f"{reply.id} posted to the broker ({posted.status})",
            counted,
        )

    @contextmanager
    def _replay_span(
        self,
        dead_letter_id: int,
        detail: Mapping[str, Any],
        headers: dict[str, str],
        dest: str,
    ) -> Iterator[Span | None]:
        """The root of the replay's own trace, linked to the trace the event started in (its
        CloudEvents traceparent): a replay is a new operation, often long after the original."""
        if self.tracer is None:
            yield None
            return
        event = detail.get("event") or {}
        attributes = {str(k): str(v) for k, v in dict(event.get("attributes") or {}).items()}
        span_attributes: dict[str, str | int] = {
            **_event_attributes(attributes),
            "cascade.dead_letter.id": dead_letter_id,
            "cascade.replay.count": int(detail.get("replay_count", 0)) + 1,
            "server.address": dest,
        }
        with self.tracer.start_as_current_span(
            f"replay {attributes.get('type', '')}",
            kind=SpanKind.PRODUCER,
            attributes=span_attributes,
            links=origin_links(attributes),
        ) as span:
            inject(headers, span)
            yield span

    @contextmanager
    def _reply_span(
        self, replay: Span | None, handler: str | None, attributes: Mapping[str, str]
    ) -> Iterator[Span | None]:
        if self.tracer is None or replay is None:
            yield None
            return
        parent = None
        if handler is not None:
            handler_context = span_context_from_traceparent(handler)
            if (
                handler_context is not None
                and handler_context.trace_id == replay.get_span_context().trace_id
            ):
                parent = trace.set_span_in_context(trace.NonRecordingSpan(handler_context))
        with self.tracer.start_as_current_span(
            f"send {attributes.get('type', '')}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={**_event_attributes(attributes), "server.address": self.ingress},
        ) as span:
            yield span


def _event_attributes(attributes: Mapping[str, str]) -> dict[str, str | int]:
    """The messaging and CloudEvents span attributes of the event a span sends."""
    span_attributes: dict[str, str | int] = {
        "messaging.operation.type": "send",
        "messaging.message.id": attributes.get("id", ""),
        "cloudevents.event_id": attributes.get("id", ""),
        "cloudevents.event_source": attributes.get("source", ""),
        "cloudevents.event_type": attributes.get("type", ""),
    }
    if "partitionkey" in attributes:
        span_attributes[CONVERSATION_ID] = attributes["partitionkey"]
    return span_attributes


def _failed(span: Span | None, reason: str) -> None:
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, reason))


def _is_cloudevent(answer: Answer) -> bool:
    content_type = (answer.header("Content-Type") or "").lower()
    return answer.header("ce-specversion") is not None or content_type.startswith(
        STRUCTURED_CONTENT_TYPE
    )

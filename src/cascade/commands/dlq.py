"""``cascade dlq``: list, show and replay the dead letters parked in the dead-letter function.

The dead-letter function (functions/dead-letter) stores every event a Trigger gave up on with
``knativeerrordest`` (the subscriber that failed), ``knativeerrorcode``, ``knativeerrordata``
and ``reason``, and serves ``GET /dead-letters``, ``GET /dead-letters/<id>`` and
``POST /dead-letters/<id>/replayed``. Replaying an entry:

1. POST the original event, unchanged (same source and id, so the subscriber's dedupe
   recognises a copy it already handled) in binary mode to ``knativeerrordest``, with one
   extension added: ``cascadereplays`` (how many times it has now been replayed).
2. If the subscriber answers with a CloudEvent (its reply), POST the reply to the broker
   ingress: a reply to a direct POST does not re-enter the broker by itself, and the chain
   (e.g. payment.authorized → order confirmed) must continue.
3. ``POST /dead-letters/<id>/replayed`` counts the replay (whenever the subscriber answered).

An entry replayed ``--max-replays`` times already is refused: a poison event would otherwise
go round for ever. See docs/operations.md.
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn
from urllib.parse import quote

import click
import orjson
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from cascade.codec import (
    STRUCTURED_CONTENT_TYPE,
    InvalidEvent,
    binary_headers,
    parse_headers,
)
from cascade.commands._discover import DATA_DIR_OPTION, ingress_url, running_state, service_url
from cascade.commands._http import Answer, Unreachable, check_url, request
from cascade.commands._tracing import cli_tracer, inject
from cascade.runner.display import short_id, short_type
from cascade.telemetry.tracing import CONVERSATION_ID, origin_links, span_context_from_traceparent
from cascade.terminal import printable, printable_data, printable_json

__all__ = ["REPLAY_EXTENSION", "dlq"]

REPLAY_EXTENSION: Final = "cascadereplays"
DEAD_LETTER_SERVICE: Final = "dead-letter"
EXIT_FAILED: Final = 1
MAX_LIST: Final = 500


class DlqError(Exception):
    """A dead-letter request failed; the message says which and why."""


@dataclass(frozen=True)
class DlqContext:
    url: str  # the dead-letter function
    data_dir: Path
    timeout: float

    def get(self, path: str) -> Any:
        answer = self._call("GET", path)
        return _json(answer, f"GET {path}")

    def post(self, path: str) -> Any:
        return _json(self._call("POST", path), f"POST {path}")

    def _call(self, method: str, path: str) -> Answer:
        try:
            answer = request(method, self.url.rstrip("/") + path, timeout=self.timeout)
        except Unreachable as exc:
            raise DlqError(f"{exc} (is the dead-letter function running?)") from None
        if not answer.ok:
            raise DlqError(f"{method} {path} answered {answer.status}: {_problem(answer)}")
        return answer


def _json(answer: Answer, what: str) -> Any:
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        raise DlqError(f"{what} did not answer JSON: {answer.text(200)!r}") from None


def _problem(answer: Answer) -> str:
    try:
        document = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return answer.text(300) or "(empty body)"
    if isinstance(document, dict) and "detail" in document:
        return str(document["detail"])
    return answer.text(300)


@click.group("dlq")
@click.option(
    "--url",
    help="The dead-letter function; default: from the running cascade run (run.json).",
)
@DATA_DIR_OPTION
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1))
@click.pass_context
def dlq(ctx: click.Context, url: str | None, data_dir: Path, timeout: float) -> None:
    """List, show and replay dead letters (see docs/operations.md).

    Exit codes: 0, 1 when a request or replay failed (or was refused), 2 for bad arguments.
    """
    ctx.obj = (url, data_dir, timeout)


def _context(ctx: click.Context) -> DlqContext:
    url, data_dir, timeout = ctx.obj  # set by the dlq group, inherited by its commands
    if url is None:
        url = service_url(data_dir, DEAD_LETTER_SERVICE)
    try:
        check_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    return DlqContext(url, data_dir, timeout)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_FAILED)


# --- list ---------------------------------------------------------------------------------


@dlq.command("list")
@click.option("--order", "order_id", metavar="ID", help="Only this order id.")
@click.option("--type", "event_type", help="Only this event type (exact).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, MAX_LIST))
@click.option("--json", "as_json", is_flag=True, help="The function's JSON, as is.")
@click.pass_context
def list_command(
    ctx: click.Context, order_id: str | None, event_type: str | None, limit: int, as_json: bool
) -> None:
    """Dead letters, newest first: id, type, order, error code, reason, where it failed."""
    context = _context(ctx)
    query = [f"limit={limit}"]
    if order_id:
        query.append(f"order_id={_quote(order_id)}")
    if event_type:
        query.append(f"type={_quote(event_type)}")
    try:
        document = context.get("/dead-letters?" + "&".join(query))
    except DlqError as exc:
        _fail(str(exc))
    entries = document.get("dead_letters", []) if isinstance(document, dict) else []
    if as_json:
        click.echo(printable_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()))
        return
    entries = printable_data(entries)
    if not entries:
        click.echo("no dead letters")
        return
    names = _service_names(context.data_dir)
    rows = [("ID", "TYPE", "ORDER", "CODE", "FAILED AT", "REPLAYS", "ORDER STATE", "REASON")]
    for entry in entries:
        rows.append(
            (
                str(entry.get("id")),
                short_type(entry.get("type")),
                short_id(entry.get("order_id")),
                str(entry.get("error_code") or "-"),
                _destination(entry.get("dest"), names),
                str(entry.get("replay_count", 0)),
                str(entry.get("order_state") or "-"),
                str(entry.get("reason") or "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


def _quote(value: str) -> str:
    return quote(value, safe="")


def _service_names(data_dir: Path) -> dict[str, str]:
    state = running_state(data_dir)
    if state is None:
        return {}
    return {str(entry["url"]): name for name, entry in state.functions.items()}


def _destination(dest: object, names: Mapping[str, str]) -> str:
    if not isinstance(dest, str) or not dest:
        return "-"
    for url, name in names.items():
        if dest.rstrip("/") == url.rstrip("/") or dest.startswith(url.rstrip("/") + "/"):
            return name
    return dest


# --- show ---------------------------------------------------------------------------------


@dlq.command("show")
@click.argument("dead_letter_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="The function's JSON, as is.")
@click.pass_context
def show_command(ctx: click.Context, dead_letter_id: int, as_json: bool) -> None:
    """One dead letter: why it failed (knativeerrordata decoded) and the original event."""
    context = _context(ctx)
    try:
        detail = context.get(f"/dead-letters/{dead_letter_id}")
    except DlqError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(printable_json(orjson.dumps(detail, option=orjson.OPT_INDENT_2).decode()))
        return
    click.echo(_describe(printable_data(detail), _service_names(context.data_dir)))


def _describe(detail: Mapping[str, Any], names: Mapping[str, str]) -> str:
    event = detail.get("event") or {}
    attributes = event.get("attributes") or {}
    dest = detail.get("dest")
    where = _destination(dest, names)
    failed_at = f"{dest} ({where})" if dest and where != dest else (dest or "")
    lines = [
        f"dead letter {detail.get('id')}: {detail.get('type')} (order {detail.get('order_id')})",
        f"  failed at     {failed_at or '(unknown: no knativeerrordest)'}",
        f"  error code    {detail.get('error_code') or '(no HTTP answer)'}",
        f"  reason        {detail.get('reason') or '-'}",
        f"  received      {detail.get('time')} ({detail.get('arrivals', 1)} time(s), "
        f"last {detail.get('last_time')})",
        f"  replays       {detail.get('replay_count', 0)}"
        + (f" (last {detail['last_replayed_at']})" if detail.get("last_replayed_at") else ""),
        f"  order state   {detail.get('order_state') or 'not final'}",
    ]
    error = detail.get("error_data")
    if isinstance(error, dict) and isinstance(error.get("base64"), str):
        # The service decodes it too (its JSON reading comes first); else decode it here.
        parsed = error.get("json")
        shown = (
            orjson.dumps(parsed, option=orjson.OPT_INDENT_2).decode()
            if parsed is not None
            else decode_error_data(error["base64"])
        )
        lines.append("  error data (knativeerrordata, decoded):")
        lines.extend(f"    {printable(line)}" for line in shown.splitlines())
    lines.append("original event:")
    lines.extend(f"  {name}: {value}" for name, value in sorted(attributes.items()))
    data = event.get("data")
    if data is not None:
        text = (
            orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
            if not isinstance(data, str)
            else data
        )
        lines.append("  data:")
        lines.extend(f"    {line}" for line in text.splitlines())
    elif event.get("data_base64"):
        lines.append(f"  data (base64): {event['data_base64']}")
    return "\n".join(lines)


def decode_error_data(encoded: str) -> str:
    """``knativeerrordata``: base64 of the first KiB of the failed answer; JSON pretty-printed."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return f"(not valid base64) {encoded}"
    try:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


# --- replay -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayOutcome:
    ok: bool
    message: str
    counted: bool = False


@dlq.command("replay")
@click.argument("ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID]...")
@click.option("--all", "replay_all", is_flag=True, help="Every dead letter with replays left.")
@click.option("--dry-run", is_flag=True, help="Print what would be sent; send nothing.")
@click.option(
    "--max-replays",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Refuse an entry already replayed this many times.",
)
@click.option(
    "--broker-url",
    help="Broker ingress for replies; default: the running cascade run's "
    "(else http://127.0.0.1:8080/default/shop).",
)
@click.pass_context
def replay_command(
    ctx: click.Context,
    ids: tuple[int, ...],
    replay_all: bool,
    dry_run: bool,
    max_replays: int,
    broker_url: str | None,
) -> None:
    """POST dead letters, unchanged, to the subscriber they failed at; replies go to the broker.

    Give IDs, or --all for every entry that has replays left (oldest first). The event keeps
    its source and id and gains the cascadereplays extension; a CloudEvent answer (a reply)
    is posted to the broker ingress so the chain continues.
    """
    if bool(ids) == replay_all:
        raise click.UsageError("give dead letter IDs or --all (not both)")
    context = _context(ctx)
    ingress = broker_url or ingress_url(context.data_dir)
    try:
        check_url(ingress)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--broker-url") from None
    try:
        targets = list(ids) if ids else _replayable_ids(context, max_replays)
    except DlqError as exc:
        _fail(str(exc))
    if replay_all and not targets:
        click.echo("nothing to replay")
        return
    failures = 0
    with cli_tracer(context.data_dir) as tracer:
        for dead_letter_id in targets:
            outcome = _replay(context, dead_letter_id, ingress, max_replays, dry_run, tracer)
            prefix = "" if outcome.ok else "FAILED "
            click.echo(
                f"{prefix}{dead_letter_id}: {printable(outcome.message)}", err=not outcome.ok
            )
            failures += not outcome.ok
    if not dry_run:
        click.echo(f"{len(targets) - failures} replayed, {failures} failed or refused")
    if failures:
        sys.exit(EXIT_FAILED)


def _replayable_ids(context: DlqContext, max_replays: int) -> list[int]:
    document = context.get(f"/dead-letters?limit={MAX_LIST}")
    entries = document.get("dead_letters", []) if isinstance(document, dict) else []
    if len(entries) >= MAX_LIST:
        click.echo(
            f"note: only the newest {MAX_LIST} dead letters are listed; run again for older ones",
            err=True,
        )
    skipped = [e for e in entries if int(e.get("replay_count", 0)) >= max_replays]
    for entry in skipped:
        click.echo(
            f"skipping {entry.get('id')}: replayed {entry.get('replay_count')} times already "
            f"(--max-replays {max_replays})",
            err=True,
        )
    chosen = []
    for entry in entries:
        if entry in skipped:
            continue
        if not entry.get("dest"):
            click.echo(f"skipping {entry.get('id')}: no knativeerrordest to replay to", err=True)
            continue
        chosen.append(int(entry["id"]))
    return sorted(chosen)  # oldest first, as they arrived


def replay_request(detail: Mapping[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """``(destination, headers, body)`` of the replay of one dead letter; DlqError if none."""
    dest = detail.get("dest")
    if not isinstance(dest, str) or not dest:
        raise DlqError("no knativeerrordest: nobody knows which subscriber it failed at")
    event = detail.get("event") or {}
    attributes = dict(event.get("attributes") or {})
    if not attributes.get("id") or not attributes.get("source"):
        raise DlqError("the stored event has no id or source")
    try:
        body = base64.b64decode(event.get("data_base64") or "", validate=True)
    except (binascii.Error, ValueError):
        raise DlqError("the stored data_base64 is not valid base64") from None
    attributes[REPLAY_EXTENSION] = str(int(detail.get("replay_count", 0)) + 1)
    headers = binary_headers(attributes)
    headers["Prefer"] = "reply"
    return dest, headers, body


def _replay(
    context: DlqContext,
    dead_letter_id: int,
    ingress: str,
    max_replays: int,
    dry_run: bool,
    tracer: trace.Tracer | None = None,
) -> ReplayOutcome:
    try:
        detail = context.get(f"/dead-letters/{dead_letter_id}")
    except DlqError as exc:
        return ReplayOutcome(False, str(exc))
    label = f"{short_type(detail.get('type'))} {detail.get('event_id')}"
    replays = int(detail.get("replay_count", 0))
    if replays >= max_replays:
        return ReplayOutcome(
            False,
            f"{label}: refused, replayed {replays} times already (--max-replays {max_replays})",
        )
    try:
        dest, headers, body = replay_request(detail)
    except DlqError as exc:
        return ReplayOutcome(False, f"{label}: {exc}")
    if dry_run:
        shown = "\n".join(f"    {name}: {value}" for name, value in headers.items())
        preview = body[:2000].decode("utf-8", errors="replace")
        return ReplayOutcome(True, f"{label}: would POST {dest}\n{shown}\n    body: {preview}")
    with _replay_span(tracer, dead_letter_id, detail, headers, dest) as span:
        try:
            answer = request("POST", dest, headers=headers, body=body, timeout=context.timeout)
        except Unreachable as exc:
            _failed(span, str(exc))
            return ReplayOutcome(False, f"{label}: {exc}")
        if span is not None:
            span.set_attribute("http.response.status_code", answer.status)
        counted = _count_replay(context, dead_letter_id)
        if not answer.ok:
            _failed(span, f"{dest} answered {answer.status}")
            return ReplayOutcome(
                False,
                f"{label}: {dest} answered {answer.status}: {_problem(answer)}"
                + ("" if counted else " (replay not counted)"),
            )
        return _forward_reply(
            label, dest, answer, ingress, context.timeout, counted, tracer=tracer, span=span
        )


@contextmanager
def _replay_span(
    tracer: trace.Tracer | None,
    dead_letter_id: int,
    detail: Mapping[str, Any],
    headers: dict[str, str],
    dest: str,
) -> Iterator[Span | None]:
    """The root of the replay's own trace, linked to the trace the event started in (its
    CloudEvents traceparent): a replay is a new operation, often long after the original."""
    if tracer is None:
        yield None
        return
    event = detail.get("event") or {}
    attributes = {str(k): str(v) for k, v in dict(event.get("attributes") or {}).items()}
    span_attributes: dict[str, str | int] = {
        "messaging.operation.type": "send",
        "messaging.message.id": attributes.get("id", ""),
        "cloudevents.event_id": attributes.get("id", ""),
        "cloudevents.event_source": attributes.get("source", ""),
        "cloudevents.event_type": attributes.get("type", ""),
        "cascade.dead_letter.id": dead_letter_id,
        "cascade.replay.count": int(detail.get("replay_count", 0)) + 1,
        "server.address": dest,
    }
    if "partitionkey" in attributes:
        span_attributes[CONVERSATION_ID] = attributes["partitionkey"]
    with tracer.start_as_current_span(
        f"replay {attributes.get('type', '')}",
        kind=SpanKind.PRODUCER,
        attributes=span_attributes,
        links=origin_links(attributes),
    ) as span:
        inject(headers, span)
        yield span


def _failed(span: Span | None, reason: str) -> None:
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, reason))


def _count_replay(context: DlqContext, dead_letter_id: int) -> bool:
    try:
        context.post(f"/dead-letters/{dead_letter_id}/replayed")
    except DlqError as exc:
        click.echo(f"warning: {dead_letter_id}: could not count the replay: {exc}", err=True)
        return False
    return True


def _forward_reply(
    label: str,
    dest: str,
    answer: Answer,
    ingress: str,
    timeout: float,
    counted: bool,
    *,
    tracer: trace.Tracer | None = None,
    span: Span | None = None,
) -> ReplayOutcome:
    if not _is_cloudevent(answer):
        return ReplayOutcome(True, f"{label}: {dest} answered {answer.status}, no reply", counted)
    try:
        reply = parse_headers(answer.headers, answer.body, wire="latin-1")
    except InvalidEvent as exc:
        return ReplayOutcome(
            False, f"{label}: {dest} answered {answer.status} with a broken reply: {exc.detail}"
        )
    headers = binary_headers(reply.attributes)
    # The reply continues the trace below the handler span that made it (the runtime names it
    # in its traceparent answer header), as the broker does with replies it stores.
    handler = answer.header("traceparent")
    with _reply_span(tracer, span, handler, reply.attributes, ingress) as reply_span:
        if reply_span is not None:
            inject(headers, reply_span)
        elif handler is not None:
            headers["traceparent"] = handler
        try:
            posted = request("POST", ingress, headers=headers, body=reply.data, timeout=timeout)
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
def _reply_span(
    tracer: trace.Tracer | None,
    replay: Span | None,
    handler: str | None,
    attributes: Mapping[str, str],
    ingress: str,
) -> Iterator[Span | None]:
    if tracer is None or replay is None:
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
    span_attributes: dict[str, str] = {
        "messaging.operation.type": "send",
        "messaging.message.id": attributes.get("id", ""),
        "cloudevents.event_id": attributes.get("id", ""),
        "cloudevents.event_source": attributes.get("source", ""),
        "cloudevents.event_type": attributes.get("type", ""),
        "server.address": ingress,
    }
    if "partitionkey" in attributes:
        span_attributes[CONVERSATION_ID] = attributes["partitionkey"]
    with tracer.start_as_current_span(
        f"send {attributes.get('type', '')}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=span_attributes,
    ) as span:
        yield span


def _is_cloudevent(answer: Answer) -> bool:
    content_type = (answer.header("Content-Type") or "").lower()
    return answer.header("ce-specversion") is not None or content_type.startswith(
        STRUCTURED_CONTENT_TYPE
    )

"""``cascade dlq``: list, show and replay the dead letters parked in a dead-letter sink.

The command line only: the sink's API is :mod:`cascade.dead_letters.client`, the replay
protocol :mod:`cascade.dead_letters.replay` (see there, and docs/operations.md). Any sink that
serves that API works; the table's KEY column is the event's ``partitionkey`` extension.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NoReturn

import click
import orjson

from cascade.commands._discover import DATA_DIR_OPTION, ingress_url, running_state, service_url
from cascade.commands._tracing import cli_tracer
from cascade.dead_letters.client import (
    DEAD_LETTER_SERVICE,
    MAX_LIST,
    DeadLetterClient,
    DeadLetterError,
    decode_error_data,
)
from cascade.dead_letters.destinations import KnownDestinations
from cascade.dead_letters.replay import Replayer
from cascade.http_client import check_url
from cascade.runner.display import short_id, short_type
from cascade.terminal import printable, printable_data, printable_json

__all__ = ["dlq"]

EXIT_FAILED: Final = 1


@click.group("dlq")
@click.option(
    "--url",
    help="The dead-letter sink; default: the dead-letter function of the running cascade run "
    "(run.json).",
)
@DATA_DIR_OPTION
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1))
@click.pass_context
def dlq(ctx: click.Context, url: str | None, data_dir: Path, timeout: float) -> None:
    """List, show and replay dead letters (see docs/operations.md).

    Exit codes: 0, 1 when a request or replay failed (or was refused), 2 for bad arguments.
    """
    ctx.obj = (url, data_dir, timeout)


def _client(ctx: click.Context) -> tuple[DeadLetterClient, Path]:
    url, data_dir, timeout = ctx.obj  # set by the dlq group, inherited by its commands
    if url is None:
        url = service_url(data_dir, DEAD_LETTER_SERVICE)
    try:
        check_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    return DeadLetterClient(url, timeout), data_dir


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_FAILED)


# --- list ---------------------------------------------------------------------------------


@dlq.command("list")
@click.option("--key", "partitionkey", metavar="KEY", help="Only events with this partitionkey.")
@click.option("--type", "event_type", help="Only this event type (exact).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, MAX_LIST))
@click.option("--json", "as_json", is_flag=True, help="The sink's JSON, as is.")
@click.pass_context
def list_command(
    ctx: click.Context, partitionkey: str | None, event_type: str | None, limit: int, as_json: bool
) -> None:
    """Dead letters, newest first: id, type, partition key, error code, where it failed,
    replays, reason."""
    client, data_dir = _client(ctx)
    try:
        entries = client.list(partitionkey=partitionkey, event_type=event_type, limit=limit)
    except DeadLetterError as exc:
        _fail(str(exc))
    if as_json:
        document = {"dead_letters": entries}
        click.echo(printable_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()))
        return
    entries = printable_data(entries)
    if not entries:
        click.echo("no dead letters")
        return
    names = _service_names(data_dir)
    rows = [("ID", "TYPE", "KEY", "CODE", "FAILED AT", "REPLAYS", "REASON")]
    for entry in entries:
        rows.append(
            (
                str(entry.get("id")),
                short_type(entry.get("type")),
                short_id(entry.get("partitionkey")),
                str(entry.get("error_code") or "-"),
                _destination(entry.get("dest"), names),
                str(entry.get("replay_count", 0)),
                str(entry.get("reason") or "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


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
@click.option("--json", "as_json", is_flag=True, help="The sink's JSON, as is.")
@click.pass_context
def show_command(ctx: click.Context, dead_letter_id: int, as_json: bool) -> None:
    """One dead letter: why it failed (knativeerrordata decoded) and the original event."""
    client, data_dir = _client(ctx)
    try:
        detail = client.show(dead_letter_id)
    except DeadLetterError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(printable_json(orjson.dumps(detail, option=orjson.OPT_INDENT_2).decode()))
        return
    click.echo(_describe(printable_data(detail), _service_names(data_dir)))


# What _describe shows in its own lines; any other field the sink adds is listed after them.
_DESCRIBED: Final = frozenset(
    {"id", "type", "partitionkey", "dest", "error_code", "reason", "time", "arrivals",
     "last_time", "replay_count", "last_replayed_at", "error_data", "event", "event_id",
     "source", "replayable"}
)  # fmt: skip


def _describe(detail: Mapping[str, Any], names: Mapping[str, str]) -> str:
    event = detail.get("event") or {}
    attributes = event.get("attributes") or {}
    dest = detail.get("dest")
    where = _destination(dest, names)
    failed_at = f"{dest} ({where})" if dest and where != dest else (dest or "")
    key = detail.get("partitionkey") or attributes.get("partitionkey")
    lines = [
        f"dead letter {detail.get('id')}: {detail.get('type')}"
        + (f" (partitionkey {key})" if key else ""),
        f"  failed at     {failed_at or '(unknown: no knativeerrordest)'}",
        f"  error code    {detail.get('error_code') or '(no HTTP answer)'}",
        f"  reason        {detail.get('reason') or '-'}",
        f"  received      {detail.get('time')} ({detail.get('arrivals', 1)} time(s), "
        f"last {detail.get('last_time')})",
        f"  replays       {detail.get('replay_count', 0)}"
        + (f" (last {detail['last_replayed_at']})" if detail.get("last_replayed_at") else ""),
    ]
    lines.extend(
        f"  {name:<13} {'-' if value is None else value}"
        for name, value in detail.items()
        if name not in _DESCRIBED and not isinstance(value, dict | list)
    )
    error = detail.get("error_data")
    if isinstance(error, dict) and isinstance(error.get("base64"), str):
        # The sink may decode it too (its JSON reading comes first); else decode it here.
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


# --- replay -------------------------------------------------------------------------------


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
@click.option(
    "--manifests",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Learn the Triggers' subscribers from these manifests instead of the broker's "
    "/-/triggers; repeatable.",
)
@click.option(
    "--allow-destination",
    "allowed",
    multiple=True,
    metavar="URL",
    help="Also replay to this URL, which is no Trigger's subscriber; repeatable.",
)
@click.pass_context
def replay_command(
    ctx: click.Context,
    ids: tuple[int, ...],
    replay_all: bool,
    dry_run: bool,
    max_replays: int,
    broker_url: str | None,
    manifests: tuple[Path, ...],
    allowed: tuple[str, ...],
) -> None:
    """POST dead letters, unchanged, to the subscriber they failed at; replies go to the broker.

    Give IDs, or --all for every entry that has replays left (oldest first). The event keeps
    its source and id and gains the cascadereplays extension; a CloudEvent answer (a reply)
    is posted to the broker ingress so the chain continues.

    Only a subscriber of one of the broker's Triggers (its /-/triggers, or --manifests) is
    replayed to, since whoever can write a dead letter chooses its knativeerrordest; any other
    destination is refused (exit 1, the URL named) unless given with --allow-destination.
    """
    if bool(ids) == replay_all:
        raise click.UsageError("give dead letter IDs or --all (not both)")
    client, data_dir = _client(ctx)
    ingress = broker_url or ingress_url(data_dir)
    try:
        check_url(ingress)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--broker-url") from None

    def warn(message: str) -> None:
        click.echo(message, err=True)

    destinations, problem = KnownDestinations.learn(
        ingress, manifests, allowed, timeout=client.timeout
    )
    if problem is not None:
        warn(f"warning: {problem}; only --allow-destination URLs will be replayed")
    replayer = Replayer(client, ingress, max_replays, warn=warn, destinations=destinations)
    targets = list(ids)
    if replay_all:
        try:
            plan = replayer.plan_all()
        except DeadLetterError as exc:
            _fail(str(exc))
        for note in plan.notes:
            warn(note)
        targets = plan.ids
        if not targets:
            click.echo("nothing to replay")
            return
    failures = 0
    with cli_tracer(data_dir) as tracer:
        replayer.tracer = tracer
        for dead_letter_id in targets:
            outcome = replayer.replay(dead_letter_id, dry_run=dry_run)
            prefix = "" if outcome.ok else "FAILED "
            click.echo(
                f"{prefix}{dead_letter_id}: {printable(outcome.message)}", err=not outcome.ok
            )
            failures += not outcome.ok
    if not dry_run:
        click.echo(f"{len(targets) - failures} replayed, {failures} failed or refused")
    if failures:
        sys.exit(EXIT_FAILED)

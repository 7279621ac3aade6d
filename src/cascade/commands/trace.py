"""``cascade trace``: a trace as a waterfall in the terminal, from ``cascade run``'s span store.

``cascade trace ORDER_ID`` draws every trace of an order (its placement, and each replay of
one of its dead letters, which is a trace of its own linked to the original), oldest first;
the 8-character prefix that ``cascade run`` prints is enough. ``cascade trace TRACE_ID``
(32 hex digits) draws that trace. Without an argument it lists the newest traces.

The spans come from ``<data-dir>/traces.sqlite3``, which ``cascade run`` fills while it runs
and keeps afterwards, so this works after the run has stopped too. Processes export their
spans in batches, so a trace may need a second or two to be complete.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Final

import click
import orjson

from cascade.commands._discover import DATA_DIR_OPTION
from cascade.runner.display import use_color
from cascade.terminal import printable, printable_json
from cascade.traces.store import STORE_FILE, SpanStore, StoredSpan
from cascade.traces.waterfall import TraceTree, outcome_of, render_trace, short_name

__all__ = ["trace"]

EXIT_NOT_FOUND: Final = 1
_TRACE_ID: Final = re.compile(r"[0-9a-fA-F]{32}\Z")


def _open(data_dir: Path) -> SpanStore:
    path = data_dir / STORE_FILE
    try:
        return SpanStore(path, readonly=True)
    except FileNotFoundError:
        click.echo(
            f"error: no span store at {path}: start `cascade run` (with --data-dir {data_dir}) "
            "and use the system first",
            err=True,
        )
        sys.exit(EXIT_NOT_FOUND)


def _as_json(spans: list[StoredSpan]) -> dict[str, object]:
    return {
        "trace_id": spans[0].trace_id,
        "spans": [
            {
                "span_id": s.span_id,
                "parent_span_id": s.parent_span_id,
                "name": s.name,
                "kind": s.kind_name,
                "service": s.service,
                "start_ns": s.start_ns,
                "end_ns": s.end_ns,
                "status": "error" if s.error else "ok",
                "status_message": s.status_message,
                "outcome": outcome_of(s)[0],
                "attributes": s.attributes,
                "links": [
                    {"trace_id": k.trace_id, "span_id": k.span_id, "attributes": k.attributes}
                    for k in s.links
                ],
            }
            for s in spans
        ],
    }


@click.command("trace")
@click.argument("ident", metavar="[ORDER_ID | TRACE_ID]", required=False)
@DATA_DIR_OPTION
@click.option(
    "--json", "as_json", is_flag=True, help="Print the spans as JSON lines, one per trace."
)
@click.option(
    "--width",
    type=click.IntRange(10, 200),
    default=None,
    help="Width of the waterfall bars (default: what the terminal allows, 20 to 60).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Traces listed without an argument.",
)
def trace(ident: str | None, data_dir: Path, as_json: bool, width: int | None, limit: int) -> None:
    """Draw the traces of an order (or one trace) from the local span store.

    ORDER_ID is the partitionkey of the order's events (the span attribute
    messaging.message.conversation_id), in full or its first 8 characters; TRACE_ID is 32
    hex digits. Each line is a span: service, name (indented under its parent), a bar on the
    trace's time axis, duration and outcome (HTTP status, retry number, handler outcome).
    Exit 1 when nothing matches.
    """
    with _open(data_dir) as store:
        if ident is None:
            _list(store, limit)
            return
        ident = ident.strip()
        if _TRACE_ID.match(ident):
            trace_ids = [ident.lower()]
            if not store.trace(trace_ids[0]):
                trace_ids = store.traces_of(ident)  # an order id may look like hex, too
        else:
            trace_ids = store.traces_of(ident)
        if not trace_ids:
            click.echo(
                f"no trace found for {ident!r} in {store.path} ({store.count()} spans kept); "
                "spans arrive a second or two after the work, so try again, or check "
                "`cascade trace` for the newest traces",
                err=True,
            )
            sys.exit(EXIT_NOT_FOUND)
        color = use_color(sys.stdout)
        bar_width = width or max(20, min(60, shutil.get_terminal_size((120, 24)).columns - 90))
        unicode = (sys.stdout.encoding or "").lower().replace("-", "") == "utf8"
        blocks = []
        for trace_id in trace_ids:
            spans = store.trace(trace_id)
            if as_json:
                click.echo(printable_json(orjson.dumps(_as_json(spans)).decode()))
                continue
            blocks.append(
                render_trace(
                    spans,
                    width=bar_width,
                    color=color,
                    unicode=unicode,
                    linked_from=store.linked_traces(trace_id),
                )
            )
        if blocks:
            click.echo("\n\n".join(blocks), color=color)


def _list(store: SpanStore, limit: int) -> None:
    trace_ids = store.recent_traces(limit)
    if not trace_ids:
        click.echo(f"no spans in {store.path} yet")
        return
    click.echo(f"{'TRACE':<32}  {'ORDER':<8}  {'SPANS':>5}  {'ERRORS':>6}  ROOT")
    for trace_id in trace_ids:
        spans = store.trace(trace_id)
        tree = TraceTree.of(spans)
        root = tree.roots[0]
        conversations = store.conversations_of(trace_id)
        order = printable(conversations[0][:8]) if conversations else "-"
        errors = sum(1 for s in spans if s.error)
        click.echo(
            f"{trace_id:<32}  {order:<8}  {len(spans):>5}  {errors:>6}  "
            + printable(f"{root.service}: {short_name(root.name)}")
        )

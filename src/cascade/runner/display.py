"""What ``cascade run`` and ``cascade tail`` print: the endpoint table and one line per delivery.

A delivery line reads ``time  outcome  type  order  trigger  status  latency`` (docs/run.md
shows real ones); a dead letter ends with ``after N attempts in S s`` and its reason.

The type is shown without its reverse-DNS prefix and the order id (``partitionkey``) by its
first 8 characters; ``cascade tail --json`` has every field in full. Retries, dead letters and
drops stand out: in color on a terminal (``NO_COLOR`` turns color off), in capitals always.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

import click

from cascade.runner.plan import FunctionPlan, RunPlan
from cascade.terminal import printable_data

__all__ = [
    "ActivityCells",
    "activity_cells",
    "format_activity",
    "render_endpoints",
    "shown_path",
    "use_color",
]

_STYLES: Final[dict[str, dict[str, Any]]] = {
    "delivered": {"fg": "green"},
    "retried": {"fg": "yellow"},
    "dead-lettered": {"fg": "red", "bold": True},
    "dropped": {"fg": "magenta", "bold": True},
}
_SHORT_ID: Final = 8


def use_color(stream: IO[str]) -> bool:
    """Color only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def short_type(event_type: str | None) -> str:
    """``com.example.shop.order.created`` → ``order.created`` (the last two segments)."""
    if not event_type:
        return "-"
    parts = event_type.split(".")
    return ".".join(parts[-2:]) if len(parts) > 3 else event_type


def short_id(value: str | None) -> str:
    if not value:
        return "-"
    return value[:_SHORT_ID] if len(value) > _SHORT_ID + 4 else value


def _clock(stamp: object) -> str:
    if not isinstance(stamp, str):
        return "--:--:--.---"
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return stamp
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _trigger(entry: Mapping[str, Any]) -> str:
    namespace, name = entry.get("namespace"), str(entry.get("trigger") or "-")
    return name if namespace in (None, "default") else f"{namespace}/{name}"


def _millis(value: object) -> str:
    return f"{value:.1f} ms" if isinstance(value, int | float) else "-"


@dataclass(frozen=True)
class ActivityCells:
    """The columns of one delivery line, unpadded (the console shows the same ones)."""

    time: str
    label: str
    type: str
    order: str
    trigger: str
    status: str
    detail: str
    extras: str


def activity_cells(entry: Mapping[str, Any]) -> ActivityCells:
    """What one entry of the broker's activity feed shows, column by column."""
    outcome = str(entry.get("outcome") or "?")
    status = entry.get("status")
    if outcome == "retried":
        label = f"retried #{entry.get('attempt', '?')}"
    elif outcome in ("dead-lettered", "dropped"):
        label = outcome.upper()
    else:
        label = outcome
    detail = _millis(entry.get("latency_ms"))
    if outcome in ("dead-lettered", "dropped"):
        elapsed = entry.get("elapsed_ms")
        seconds = f" in {elapsed / 1000:.1f} s" if isinstance(elapsed, int | float) else ""
        attempts = entry.get("attempt", "?")
        detail = f"after {attempts} attempt{'' if attempts == 1 else 's'}{seconds}"
    extras = []
    if entry.get("error") and status is None:
        extras.append(str(entry["error"]))
    if entry.get("reason"):
        extras.append(f"reason: {entry['reason']}")
    return ActivityCells(
        time=_clock(entry.get("time")),
        label=label,
        type=short_type(entry.get("type")),
        order=short_id(entry.get("partitionkey")),
        trigger=_trigger(entry),
        status=str(status) if status is not None else "---",
        detail=detail,
        extras="; ".join(extras),
    )


def format_activity(entry: Mapping[str, Any], *, color: bool = False) -> str:
    """One line for one entry of the broker's activity feed (event text escaped)."""
    entry = printable_data(entry)
    cells = activity_cells(entry)
    style = _STYLES.get(str(entry.get("outcome") or "?"), {})
    status = entry.get("status")
    columns = [
        cells.time,
        click.style(f"{cells.label:<13}", **style) if color and style else f"{cells.label:<13}",
        f"{cells.type:<20}",
        f"{cells.order:<8}",
        f"{cells.trigger:<28}",
        click.style(f"{cells.status:>3}", fg="red")
        if color and isinstance(status, int) and status >= 300
        else f"{cells.status:>3}",
        f"{cells.detail:>9}",
    ]
    line = "  ".join(columns)
    if cells.extras:
        line += "  " + cells.extras
    return line


def render_endpoints(
    plan: RunPlan, state_file: Path, *, color: bool = False, console: str | None = None
) -> str:
    """The table printed once everything is ready: the web console, the APIs (SinkBinding
    subjects, such as the shop's order API), the broker ingress, the other functions, the
    broker admin."""
    sinks = {t.delivery.dead_letter_sink for t in plan.topology.triggers}
    by_broker = {url: f"Broker {name}" for name, url in plan.ingress.items()}
    sources = [fn for fn in plan.functions if fn.sink is not None]
    rows: list[tuple[str, str, str]] = []
    if console is not None:
        rows.append(
            ("console", console, "open in a browser: graph, live deliveries, chains, dead letters")
        )
    for fn in sources:
        assert fn.sink is not None
        rows.append((f"{fn.name} API", fn.url, _notes(fn, sinks, by_broker.get(fn.sink, fn.sink))))
    for name, url in plan.ingress.items():
        rows.append(("broker ingress", url, f"Broker {name}"))
    for fn in plan.functions:
        if fn not in sources:
            rows.append((fn.name, fn.url, _notes(fn, sinks, None)))
    rows.append(("broker admin", f"{plan.broker_url}/-/activity", "/-/health /-/triggers /metrics"))
    width = max(len(row[0]) for row in rows)
    url_width = max(len(row[1]) for row in rows)
    header = f"  {'ENDPOINT':<{width}}  {'URL':<{url_width}}  NOTES"
    lines = [click.style(header, bold=True) if color else header]
    lines += [f"  {a:<{width}}  {b:<{url_width}}  {c}".rstrip() for a, b, c in rows]
    lines.append("")
    data_dir = shown_path(plan.data_dir)
    lines.append(
        f"  data: {data_dir}/ (logs: {data_dir}/logs/, endpoints: {shown_path(state_file)})"
    )
    lines.extend(_hints(plan))
    return "\n".join(lines)


def _notes(fn: FunctionPlan, sinks: set[str | None], publishes_to: str | None) -> str:
    notes = []
    if publishes_to is not None:
        notes.append(f"publishes to {publishes_to} (K_SINK)")
    if fn.triggers:
        count = len(fn.triggers)
        notes.append(f"subscriber of {count} trigger{'s' if count != 1 else ''}")
    if any(sink and sink.startswith(fn.url + "/") for sink in sinks):
        notes.append("dead-letter sink")
    if not fn.service:
        notes.append("no Knative Service in the manifests")
    return ", ".join(notes)


def shown_path(path: Path) -> str:
    """A path relative to the current directory when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _hints(plan: RunPlan) -> Sequence[str]:
    by_name = {fn.name: fn for fn in plan.functions}
    hints = []
    order = by_name.get("order")
    if order is not None:
        hints.append(
            f"  place an order: curl -s {order.url}/orders -H 'Content-Type: application/json' -d "
            """'{"customer": {"id": "ada", "email": "ada@example.com"}, """
            """"items": [{"sku": "MUG", "quantity": 1}]}'"""
        )
    hints.append("  in another terminal: cascade tail | cascade send | cascade dlq list")
    hints.append("  Ctrl-C stops everything; cascade run again resumes")
    return hints

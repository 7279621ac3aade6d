"""``cascade tail``: follow the broker's deliveries, filtered, as lines or JSON."""

from __future__ import annotations

import http.client
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import click
import orjson

from cascade.broker.telemetry.activity import OUTCOMES
from cascade.commands._discover import DATA_DIR_OPTION, broker_url
from cascade.http_client import Unreachable
from cascade.runner.display import format_activity, use_color
from cascade.runner.feed import ActivityClient, FeedError, broker_origin
from cascade.terminal import printable_json

__all__ = ["ActivityFilter", "tail"]

EXIT_FAILED: Final = 1


class ActivityFilter:
    """Which entries to show; every given criterion must hold."""

    def __init__(
        self,
        *,
        type_prefix: str | None = None,
        trigger: str | None = None,
        outcomes: tuple[str, ...] = (),
        order: str | None = None,
    ) -> None:
        self.type_prefix = type_prefix
        self.trigger = trigger
        self.outcomes = frozenset(outcomes)
        self.order = order

    def matches(self, entry: Mapping[str, Any]) -> bool:
        if self.type_prefix and not str(entry.get("type") or "").startswith(self.type_prefix):
            return False
        if self.trigger:
            name = str(entry.get("trigger") or "")
            qualified = f"{entry.get('namespace')}/{name}"
            if self.trigger not in (name, qualified):
                return False
        if self.outcomes and entry.get("outcome") not in self.outcomes:
            return False
        # An order id matches in full or by the prefix `cascade run` shows.
        return not (self.order and not str(entry.get("partitionkey") or "").startswith(self.order))


@click.command("tail")
@click.option(
    "--url",
    help="The broker (its ingress URL works too); default: the running cascade run's broker "
    "(else http://127.0.0.1:8080).",
)
@DATA_DIR_OPTION
@click.option("--type", "type_prefix", metavar="PREFIX", help="Only event types starting so.")
@click.option("--trigger", help="Only this Trigger (NAME or NAMESPACE/NAME).")
@click.option(
    "--outcome",
    "outcomes",
    multiple=True,
    type=click.Choice(OUTCOMES),
    help="Only these outcomes; repeatable.",
)
@click.option("--order", metavar="ID", help="Only this order id (partitionkey), or its prefix.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, every field.")
@click.option(
    "--follow/--no-follow",
    default=True,
    show_default=True,
    help="Keep following, or print what the broker holds and exit.",
)
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(0, 2000),
    help="How many recent entries to start with (before filtering).",
)
def tail(
    url: str | None,
    data_dir: Path,
    type_prefix: str | None,
    trigger: str | None,
    outcomes: tuple[str, ...],
    order: str | None,
    as_json: bool,
    follow: bool,
    limit: int,
) -> None:
    """Show deliveries as the broker makes them: time, outcome, type, order, trigger, status,
    latency. Ctrl-C stops; the command also ends when the broker stops.

    Exit codes: 0, 1 when the broker cannot be reached, 2 for bad options.
    """
    target = url or broker_url(data_dir)
    try:
        broker_origin(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    wanted = ActivityFilter(
        type_prefix=type_prefix, trigger=trigger, outcomes=outcomes, order=order
    )
    color = use_color(sys.stdout) and not as_json
    client = ActivityClient(target)
    try:
        for entry in client.entries(follow=follow, limit=limit):
            if not wanted.matches(entry):
                continue
            if as_json:
                click.echo(printable_json(orjson.dumps(entry).decode()))
            else:
                click.echo(format_activity(entry, color=color), color=color)
    except KeyboardInterrupt:
        return
    except (Unreachable, OSError, http.client.HTTPException) as exc:
        click.echo(f"error: cannot read the activity feed of {target}: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except FeedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if follow:
        click.echo("the broker ended the feed (it stopped)", err=True)

"""The log options ``cascade broker`` and ``cascade run`` share: defined once, same help.

``cascade run`` passes what it was given on to the broker it starts (:func:`broker_log_args`),
so both commands accept exactly the same values and report the same mistakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, get_args

import click

from cascade.broker.log.factory import LogKind

__all__ = ["LOG_KINDS", "broker_log_args", "check_log_options", "log_options"]

LOG_KINDS: tuple[str, ...] = get_args(LogKind)
F = TypeVar("F", bound=Callable[..., object])


def log_options(command: F) -> F:
    """Add ``--log`` and ``--bootstrap-servers`` to a click command."""
    command = click.option(
        "--bootstrap-servers",
        metavar="HOST:PORT[,HOST:PORT]",
        help="Kafka bootstrap servers for --log kafka.",
    )(command)
    command = click.option(
        "--log",
        "log_kind",
        type=click.Choice(LOG_KINDS),
        default="sqlite",
        show_default=True,
        help="Where the broker stores events: durable sqlite files in the data directory, "
        "memory (lost when the broker stops), or a Kafka cluster (topic per Broker).",
    )(command)
    return command


def check_log_options(log_kind: str, bootstrap_servers: str | None) -> None:
    """click.UsageError (exit 2) for a combination the broker would refuse."""
    if log_kind == "kafka" and not bootstrap_servers:
        raise click.UsageError("--log kafka needs --bootstrap-servers HOST:PORT")
    if bootstrap_servers and log_kind != "kafka":
        raise click.UsageError(f"--bootstrap-servers is for --log kafka, not --log {log_kind}")


def broker_log_args(log_kind: str, bootstrap_servers: str | None) -> list[str]:
    """The ``cascade broker`` arguments for these options."""
    args = ["--log", log_kind]
    if bootstrap_servers:
        args += ["--bootstrap-servers", bootstrap_servers]
    return args

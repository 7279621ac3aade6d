"""The log options ``cascade broker`` and ``cascade run`` share: defined once, same help.

``cascade run`` passes what it was given on to the broker it starts (:func:`broker_log_args`),
so both commands accept exactly the same values and report the same mistakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, get_args

import click

from cascade.broker.log.factory import DEFAULT_NATS_URL, LogKind

__all__ = ["LOG_KINDS", "broker_log_args", "check_log_options", "log_options"]

LOG_KINDS: tuple[str, ...] = get_args(LogKind)
F = TypeVar("F", bound=Callable[..., object])


def log_options(command: F) -> F:
    """Add ``--log``, ``--bootstrap-servers`` and ``--nats-url`` to a click command."""
    command = click.option(
        "--nats-url",
        metavar="nats://HOST:PORT",
        help=f"NATS server with JetStream for --log nats [default: {DEFAULT_NATS_URL}].",
    )(command)
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
        "memory (lost when the broker stops), a Kafka cluster (topic per Broker), or NATS "
        "JetStream (stream per Broker).",
    )(command)
    return command


def check_log_options(
    log_kind: str, bootstrap_servers: str | None, nats_url: str | None = None
) -> None:
    """click.UsageError (exit 2) for a combination the broker would refuse."""
    if log_kind == "kafka" and not bootstrap_servers:
        raise click.UsageError("--log kafka needs --bootstrap-servers HOST:PORT")
    if bootstrap_servers and log_kind != "kafka":
        raise click.UsageError(f"--bootstrap-servers is for --log kafka, not --log {log_kind}")
    if nats_url is not None and log_kind != "nats":
        raise click.UsageError(f"--nats-url is for --log nats, not --log {log_kind}")
    if nats_url is not None and not nats_url.strip():
        raise click.UsageError("--nats-url must name a server, e.g. nats://127.0.0.1:4222")


def broker_log_args(
    log_kind: str, bootstrap_servers: str | None, nats_url: str | None = None
) -> list[str]:
    """The ``cascade broker`` arguments for these options."""
    args = ["--log", log_kind]
    if bootstrap_servers:
        args += ["--bootstrap-servers", bootstrap_servers]
    if nats_url:
        args += ["--nats-url", nats_url]
    return args

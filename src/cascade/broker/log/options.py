"""The log options ``cascade broker`` and ``cascade run`` share: defined once, same help.

``cascade run`` passes what it was given on to the broker it starts (:func:`broker_log_args`),
so both commands accept exactly the same values and report the same mistakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, get_args

import click

from cascade.broker.log.factory import DEFAULT_NATS_URL, LogKind
from cascade.broker.log.retention import (
    DEFAULT_RETENTION_INTERVAL,
    RetentionPolicy,
    parse_duration,
    parse_size,
)

__all__ = [
    "LOG_KINDS",
    "retention_policy",
    "broker_log_args",
    "check_log_options",
    "log_options",
]

LOG_KINDS: tuple[str, ...] = get_args(LogKind)
F = TypeVar("F", bound=Callable[..., object])


class _Duration(click.ParamType[float | None, object]):
    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if value is None or isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Size(click.ParamType[int | None, object]):
    name = "size"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | None:
        if value is None or isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def log_options(command: F) -> F:
    """Add ``--log``, ``--bootstrap-servers``, ``--nats-url`` and the sqlite log's ``--retention*``
    options to a click command."""
    command = click.option(
        "--retention-interval",
        type=click.FloatRange(min=0.01),
        default=DEFAULT_RETENTION_INTERVAL,
        show_default=True,
        help="sqlite log: seconds between two retention passes.",
    )(command)
    command = click.option(
        "--retention-bytes",
        type=_Size(),
        default="1GiB",
        show_default=True,
        help="sqlite log: drop the oldest records once the Broker's log holds more than this "
        "(split evenly across partitions; e.g. 512MiB, 100MB; none = no limit). Records a "
        "Trigger has not finished are kept. Kafka logs use the topic's own retention.bytes.",
    )(command)
    command = click.option(
        "--retention",
        type=_Duration(),
        default="7d",
        show_default=True,
        help="sqlite log: drop records older than this (e.g. 7d, 12h, 30m; none = keep), "
        "never one a Trigger has not finished. Kafka logs use the topic's own retention.ms.",
    )(command)
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


def retention_policy(
    retention: float | None, retention_bytes: int | None, retention_interval: float
) -> RetentionPolicy:
    return RetentionPolicy(retention, retention_bytes, retention_interval)


def broker_log_args(
    log_kind: str,
    bootstrap_servers: str | None,
    nats_url: str | None = None,
    retention: RetentionPolicy | None = None,
) -> list[str]:
    """The ``cascade broker`` arguments for these options."""
    args = ["--log", log_kind]
    if bootstrap_servers:
        args += ["--bootstrap-servers", bootstrap_servers]
    if nats_url:
        args += ["--nats-url", nats_url]
    if retention is not None:
        age, size = retention.max_age_seconds, retention.max_bytes
        args += ["--retention", "none" if age is None else f"{age!r}s"]
        args += ["--retention-bytes", "none" if size is None else str(size)]
        args += ["--retention-interval", repr(retention.interval)]
    return args

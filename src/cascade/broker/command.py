"""``cascade broker``: run the local Knative-Kafka-class broker over Broker/Trigger manifests."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click

from cascade.broker.banner import loop_risks, render_startup
from cascade.broker.http.limits import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT_SECONDS
from cascade.broker.log.base import LogError
from cascade.broker.log.factory import LogKind
from cascade.broker.log.options import check_log_options, log_options, retention_policy
from cascade.broker.oidc import AuthorizationMode
from cascade.broker.server import BrokerServer, new_event_loop
from cascade.broker.settings import (
    DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_MAX_EVENT_BYTES,
    BrokerSettings,
)
from cascade.broker.topology import ManifestError, Topology, load_topology
from cascade.broker.topology.service_urls import ServiceUrlError, parse_service_urls
from cascade.startup_objects import freeze_startup_objects
from cascade.telemetry.tracing import setup_tracing

__all__ = ["broker"]

logger = logging.getLogger("cascade.broker")

EXIT_MANIFEST_ERROR = 2
EXIT_START_FAILED = 1


@click.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Broker/Trigger/Service manifest (YAML file or folder); repeatable.",
)
@click.option(
    "--service-url",
    "service_urls",
    multiple=True,
    metavar="[NAMESPACE/]NAME=URL",
    help="Where a Knative Service named by a ref runs (wins over the manifest); repeatable. "
    "cascade run passes one per function.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@log_options
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".cascade"),
    show_default=True,
    help="Folder of the sqlite logs.",
)
@click.option("--partitions", default=10, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--max-inflight",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Deliveries at once per unordered Trigger.",
)
@click.option(
    "--max-event-bytes",
    default=DEFAULT_MAX_EVENT_BYTES,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest event (attributes + data) the ingress stores; larger ones get 503.",
)
@click.option(
    "--max-answer-bytes",
    default=DEFAULT_MAX_ANSWER_BYTES,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest answer body read from a subscriber or sink (chunked or not); a longer one "
    "fails the attempt.",
)
@click.option(
    "--max-connections",
    default=DEFAULT_MAX_CONNECTIONS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Open HTTP connections at once; past it a new one gets 503 and is closed.",
)
@click.option(
    "--read-timeout",
    default=DEFAULT_READ_TIMEOUT_SECONDS,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a client has to send a request head, and again its body (408).",
)
@click.option(
    "--max-hops",
    type=click.IntRange(min=1),
    default=None,
    help="Opt-in loop guard: drop replies more than N replies away from a produced event.",
)
@click.option(
    "--drain-seconds",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="On SIGTERM, how long in-flight deliveries may finish before they are abandoned.",
)
@click.option(
    "--oidc",
    is_flag=True,
    help="Sender identity as Knative's authentication-oidc: serve an OIDC issuer at /-/oidc, "
    "send a token with every delivery, dead letter and reply, enforce EventPolicies at the "
    "ingress (docs/security.md).",
)
@click.option(
    "--oidc-default-mode",
    type=click.Choice(["allow-same-namespace", "allow-all", "deny-all"]),
    default="allow-same-namespace",
    show_default=True,
    help="With --oidc, who may send to a Broker no EventPolicy applies to (Knative's "
    "default-authorization-mode).",
)
def broker(
    files: tuple[Path, ...],
    service_urls: tuple[str, ...],
    host: str,
    port: int,
    log_kind: LogKind,
    bootstrap_servers: str | None,
    nats_url: str | None,
    retention: float | None,
    retention_bytes: int | None,
    retention_interval: float,
    data_dir: Path,
    partitions: int,
    max_inflight: int,
    max_event_bytes: int,
    max_answer_bytes: int,
    max_connections: int,
    read_timeout: float,
    max_hops: int | None,
    drain_seconds: float,
    oidc: bool,
    oidc_default_mode: AuthorizationMode,
) -> None:
    """Run the local Knative-Kafka-class broker (see docs/broker.md)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    check_log_options(log_kind, bootstrap_servers, nats_url)
    try:
        urls = parse_service_urls(service_urls)
    except ServiceUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--service-url") from None
    try:
        topology = load_topology(list(files), service_urls=urls)
    except ManifestError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_MANIFEST_ERROR)
    try:
        settings = BrokerSettings(
            host=host,
            port=port,
            log_kind=log_kind,
            bootstrap_servers=bootstrap_servers,
            nats_url=nats_url,
            data_dir=data_dir,
            partitions=partitions,
            max_inflight=max_inflight,
            max_event_bytes=max_event_bytes,
            max_answer_bytes=max_answer_bytes,
            max_connections=max_connections,
            read_timeout=read_timeout,
            max_hops=max_hops,
            drain_seconds=drain_seconds,
            oidc=oidc,
            oidc_default_mode=oidc_default_mode,
            retention=retention_policy(retention, retention_bytes, retention_interval),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    setup_tracing("cascade-broker")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        sys.exit(runner.run(_serve(topology, settings)))


async def _serve(topology: Topology, settings: BrokerSettings) -> int:
    server = BrokerServer(topology, settings)
    try:
        await server.start()
    except (OSError, LogError, ValueError) as exc:
        click.echo(f"error: cannot start the broker: {exc}", err=True)
        await server.stop()
        return EXIT_START_FAILED
    click.echo(render_startup(topology, server.ingress_url))
    for warning in loop_risks(topology.triggers):
        logger.warning("%s", warning)
    if settings.max_hops is not None:
        logger.info("loop guard on: replies beyond %d hops are dropped", settings.max_hops)
    if server.identity is not None:
        click.echo(f"sender identity on: issuer {server.identity.issuer.url}")
    frozen = freeze_startup_objects()
    logger.debug("%d start-up objects moved out of the collector's full passes", frozen)
    click.echo(f"cascade broker ready on http://{settings.host}:{server.port}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logger.info("shutting down: refusing new events, finishing in-flight deliveries")
    await server.stop()
    logger.info("stopped")
    return 0

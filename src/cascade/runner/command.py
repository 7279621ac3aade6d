"""``cascade run``: the broker and every function on this machine, with a live delivery view."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cascade.broker.banner import summarize_notices
from cascade.broker.log.factory import LogKind
from cascade.broker.log.options import check_log_options, log_options, retention_policy
from cascade.broker.topology import ManifestError
from cascade.runner.plan import PlanError, make_plan
from cascade.runner.run import Runner, RunOptions
from cascade.runner.supervisor import (
    DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_DELAY,
    DEFAULT_RESET_AFTER,
    RestartPolicy,
)
from cascade.traces.receiver import traces_url
from cascade.traces.store import DEFAULT_MAX_AGE_SECONDS, DEFAULT_MAX_SPANS

__all__ = ["run"]

EXIT_MANIFEST_ERROR = 2


@click.command("run")
@click.option(
    "-f",
    "--manifests",
    "manifests",
    multiple=True,
    default=(Path("k8s/rendered/shop.yaml"),),
    show_default=True,
    type=click.Path(exists=True, path_type=Path),
    help="Broker/Trigger/Service/SinkBinding manifests (file or folder); repeatable.",
)
@click.option(
    "--functions-dir",
    default=Path("functions"),
    show_default=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of functions: every <name>/func.py runs as the Knative Service <name>.",
)
@click.option(
    "--data-dir",
    default=Path(".cascade"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Broker log, function stores, logs/ and run.json; running again resumes from it.",
)
@log_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address everything binds.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="The broker's port (ingress and /-/ admin); 0 picks a free one.",
)
@click.option(
    "--base-port",
    default=8081,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="First function port, then one up per function in manifest order; 0 picks free ones.",
)
@click.option(
    "--console-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the web console (on --host); 0 picks a free one. Default: --port minus one "
    "(8079), or a free one when --port is 0.",
)
@click.option("--no-console", is_flag=True, help="Do not serve the web console.")
@click.option(
    "--otlp-endpoint",
    metavar="URL",
    help="Also send every span on to this OTLP/HTTP endpoint (a collector or Jaeger, e.g. "
    "http://127.0.0.1:4318); default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or "
    "$OTEL_EXPORTER_OTLP_ENDPOINT if set. Spans are kept locally for `cascade trace` either way.",
)
@click.option(
    "--trace-max-spans",
    default=DEFAULT_MAX_SPANS,
    show_default=True,
    type=click.IntRange(min=100),
    help="Spans kept in <data-dir>/traces.sqlite3 for `cascade trace`; the oldest go first.",
)
@click.option(
    "--trace-max-hours",
    default=DEFAULT_MAX_AGE_SECONDS / 3600,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Spans older than this are removed from the span store.",
)
@click.option(
    "--startup-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds to wait for every process to be ready.",
)
@click.option(
    "--drain-seconds",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="On Ctrl-C, how long the broker lets in-flight deliveries finish.",
)
@click.option(
    "--restart-delay",
    default=DEFAULT_INITIAL_DELAY,
    show_default=True,
    type=click.FloatRange(min=0),
    help="A process that exits while the run goes on is started again after this many "
    "seconds, doubled per exit in a row (like Kubernetes' CrashLoopBackOff)...",
)
@click.option(
    "--restart-max-delay",
    default=DEFAULT_MAX_DELAY,
    show_default=True,
    type=click.FloatRange(min=0),
    help="...up to this many seconds...",
)
@click.option(
    "--restart-reset",
    default=DEFAULT_RESET_AFTER,
    show_default=True,
    type=click.FloatRange(min=0),
    help="...and back to --restart-delay once the process has run this many seconds.",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print the endpoints and problems only: no start progress, no line per successful "
    "delivery (retries, dead letters and drops still show).",
)
@click.option(
    "--oidc",
    is_flag=True,
    help="Sender identity on every hop, as on a cluster with security.oidc.enabled: the broker "
    "issues tokens and enforces EventPolicies, each function accepts only its own Triggers and "
    "publishes with its SinkBinding's token (docs/security.md).",
)
def run(
    manifests: tuple[Path, ...],
    functions_dir: Path,
    data_dir: Path,
    log_kind: LogKind,
    bootstrap_servers: str | None,
    nats_url: str | None,
    retention: float | None,
    retention_bytes: int | None,
    retention_interval: float,
    host: str,
    port: int,
    base_port: int,
    console_port: int | None,
    no_console: bool,
    otlp_endpoint: str | None,
    trace_max_spans: int,
    trace_max_hours: float,
    startup_timeout: float,
    drain_seconds: float,
    restart_delay: float,
    restart_max_delay: float,
    restart_reset: float,
    quiet: bool,
    oidc: bool,
) -> None:
    """Run the broker and every function locally, and show each delivery as it happens.

    Starts `cascade broker` on the manifests (its log: --log, sqlite in --data-dir by default,
    a Kafka cluster with --log kafka --bootstrap-servers, or NATS JetStream with --log nats
    [--nats-url]) and one `cascade serve`
    per folder of --functions-dir holding a func.py, each on its own port. A Trigger's
    subscriber.ref and a dead-letter sink's ref to a Knative Service reach the function of that
    name; a SinkBinding's subject gets K_SINK (the shop's order API publishes to the broker).
    A Service's container env from the manifests is passed on; the environment you start
    `cascade run` with wins.

    Once every process answers its health check, the endpoints are printed (also written to
    <data-dir>/run.json for `cascade send`, `cascade tail` and `cascade dlq`) and each delivery
    shows as a line: time, outcome, event type, order (partitionkey), trigger, status, latency.

    The first endpoint is the web console (docs/console.md): the Triggers and functions as a
    graph with live rates, errors, retries and lag, the deliveries as they happen, one order's
    chain with its trace, and the dead letters with a replay button (dry run first). It serves
    --host only, and a change (a replay) needs the token of the console's own page.

    Every process sends its spans to a small OTLP/HTTP receiver in `cascade run`, kept in
    <data-dir>/traces.sqlite3 (bounded by --trace-max-spans and --trace-max-hours) for
    `cascade trace ORDER_ID`, and forwarded to --otlp-endpoint when given.

    A process that exits while the run goes on (a crash, kill -9) is started again on its
    port after a back-off delay (--restart-delay doubling up to --restart-max-delay); each
    restart is shown and counted (run.json), while the broker retries deliveries meanwhile.

    Ctrl-C or SIGTERM stops everything in order and exits 0; a second Ctrl-C kills at once.
    Running again on the same --data-dir resumes where it stopped. Exit codes: 1 when
    something cannot start on the first launch (port in use, a function fails: its output is
    shown), 2 for an invalid manifest or option.
    """
    check_log_options(log_kind, bootstrap_servers, nats_url)
    forward = _forward_url(otlp_endpoint)
    try:
        plan = make_plan(
            manifests=manifests,
            functions_dir=functions_dir,
            data_dir=data_dir.resolve(),
            host=host,
            port=port,
            base_port=base_port,
            environ=os.environ,
            oidc=oidc,
        )
    except ManifestError as exc:
        click.echo(f"error: invalid manifest: {exc}", err=True)
        sys.exit(EXIT_MANIFEST_ERROR)
    except PlanError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    for notice in summarize_notices(plan.notices):
        if not quiet:
            click.echo(f"notice: {notice}")
    if restart_max_delay < restart_delay:
        raise click.BadParameter(
            f"{restart_max_delay:g} is below --restart-delay {restart_delay:g}",
            param_hint="--restart-max-delay",
        )
    options = RunOptions(
        startup_timeout=startup_timeout,
        drain_seconds=drain_seconds,
        otlp_endpoint=forward,
        trace_max_spans=trace_max_spans,
        trace_max_age_seconds=trace_max_hours * 3600,
        quiet=quiet,
        cwd=Path.cwd(),
        log_kind=log_kind,
        bootstrap_servers=bootstrap_servers,
        nats_url=nats_url,
        console_port=None if no_console else _console_port(console_port, plan.broker_port, port),
        retention=retention_policy(retention, retention_bytes, retention_interval),
        restart=RestartPolicy(restart_delay, restart_max_delay, restart_reset),
    )
    sys.exit(Runner(plan, options).run())


def _console_port(option: int | None, broker_port: int, port_option: int) -> int:
    """--console-port, else the port below the broker's (8079 by default), so a bookmarked
    console URL stays the same from run to run; a free one when --port is 0."""
    if option is not None:
        return option
    return 0 if port_option == 0 else max(0, broker_port - 1)


def _forward_url(option: str | None) -> str | None:
    """The full traces URL spans are forwarded to: --otlp-endpoint (a base URL, or one that
    ends in /v1/traces), else the standard variables the way the SDK reads them."""
    if option is not None:
        if not option.startswith(("http://", "https://")):
            raise click.BadParameter("use an http:// or https:// URL", param_hint="--otlp-endpoint")
        return traces_url(option)
    for variable, full in (
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", True),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", False),
    ):
        value = os.environ.get(variable, "").strip()
        if not value:
            continue
        if not value.startswith(("http://", "https://")):
            raise click.UsageError(f"{variable}={value!r}: use an http:// or https:// URL")
        return value if full else traces_url(value)
    return None

"""Benchmark: events through ``cascade broker`` against the subscriber's own direct throughput.

Two subscribers, each measured against itself (same run, same load, rows interleaved):
  cascade  a trivial Cascade function (pydantic model, 204) under ``cascade serve``, gunicorn
           gthread workers with one thread each: what subscribers are in Cascade
  aiohttp  a bare aiohttp counter in one process: the ceiling, far cheaper per request
Rows per subscriber (wrk, one binary CloudEvent per request, unique ``ce-id``):
  direct  wrk -> subscriber
  broker  wrk -> broker ingress /<ns>/<broker> -> sqlite log -> unordered Trigger -> subscriber
  nats    the same broker on a NATS JetStream log (its own nats-server, file store)
  kafka   the same broker on a Kafka-protocol log (Tansu, in memory), with --log kafka
  paced   the broker row under light load: the latency the hop adds without queueing
The nats and kafka rows count the log server's CPU in its own column.
The subscriber's own counts give delivered events/s (first send to last receipt) and delivery
latency (send time carried in the ``benchsentus`` extension to receipt), and they prove zero
loss: every event the ingress accepted with 202 arrives at least once.
Targets (issue 13): broker delivered events/s >= 0.7x direct requests/s with the Cascade
subscriber, >= 0.5x with the aiohttp one; broker CPU <= 100 µs per event on sqlite; a
server-backed log's delivered events/s >= 0.5x sqlite's (within 2x); zero loss. The Cascade
subscriber's row is the headline.

``python -m bench.broker_throughput [--subscriber cascade|aiohttp] [--log nats|kafka]
[--quick] [--duration S]`` (default: the sqlite and nats logs)
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from scripts.kafka_server import tansu_binary
from scripts.nats_server import nats_server_binary

from bench._cli import Options, build_parser, options_from
from bench._deliveries import DELIVERY_DIR_ENV, DeliveryFiles
from bench._load import Measurement, fresh_run_id, measure, measure_all_workers
from bench._otlp import exported_requests, exporter_env, start_sink, wait_for_export
from bench._report import (
    Limit,
    Ratio,
    finish,
    markdown_table,
    medians,
    noise_note,
    progress,
    result_header,
    run_interleaved,
    set_aside,
    spread,
    utc_now,
)
from bench._servers import REPO_ROOT, Server, cascade_argv, free_port, post_event
from bench._wrk import DEFAULT_EVENT, BenchError, WrkResult, ensure_wrk

NAME = "broker_throughput"
NAMESPACE = "bench"
BROKER = "default"
# Issue 13's targets, per subscriber: broker delivered events/s over the subscriber's direct
# req/s, and the broker's CPU per event on the sqlite log; a server-backed log within 2x of sqlite.
TARGET_VS_DIRECT = {"cascade": 0.7, "aiohttp": 0.5}
LIMIT_BROKER_CPU_US = 100.0
TARGET_SERVER_LOG_VS_SQLITE = 0.5

# The paced rows measure the latency the hop adds under light load, without queueing:
# PACED_CONNECTIONS connections, each waiting PACE_MS before every request.
PACED_CONNECTIONS = 4
PACE_MS = 10

CASCADE_SUBSCRIBER = "bench/apps/cascade_subscriber.py"


@dataclass(frozen=True)
class SubscriberKind:
    key: str
    label: str
    direct_status: int  # what the subscriber answers wrk directly


SUBSCRIBERS = {
    # The headline first: subscribers in Cascade are Cascade functions.
    "cascade": SubscriberKind("cascade", "Cascade function (cascade serve)", 204),
    "aiohttp": SubscriberKind("aiohttp", "bare aiohttp, 1 process", 202),
}
# Rows of the broker on a server-backed log, besides the sqlite one ("broker"): what it runs on.
SERVER_LOGS = {
    "nats": "NATS JetStream, own nats-server, file store",
    "kafka": "Kafka protocol, Tansu in memory",
}
# Both: issue 13 asks for the Kafka figure, and NATS is the other server-backed log.
DEFAULT_SERVER_LOGS = ("nats", "kafka")


def row_kinds(server_logs: Sequence[str]) -> tuple[str, ...]:
    return ("direct", "broker", *server_logs, "paced")


def row_key(subscriber: str, kind: str) -> str:
    return f"{subscriber}-{kind}"


def row_label(subscriber: str, kind: str) -> str:
    name = SUBSCRIBERS[subscriber].label
    if kind == "direct":
        return f"{name}: direct (wrk -> subscriber)"
    if kind == "broker":
        return f"{name}: via cascade broker (sqlite, unordered)"
    if kind in SERVER_LOGS:
        return f"{name}: via cascade broker ({kind}, unordered)"
    return f"{name}: via broker, paced ({PACED_CONNECTIONS} conns x {PACE_MS} ms gaps)"


def broker_name(subscriber: str, kind: str) -> str:
    """The broker serving a row: the sqlite one for broker and paced rows."""
    return f"{subscriber}-broker" + (f"-{kind}" if kind in SERVER_LOGS else "")


def log_server_name(subscriber: str, kind: str) -> str:
    return f"{subscriber}-{kind}-server"


def manifests(subscriber_port: int) -> str:
    """One Broker and one unordered Trigger with no filter, as Knative YAML."""
    return f"""\
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: {BROKER}
  namespace: {NAMESPACE}
  annotations:
    eventing.knative.dev/broker.class: Kafka
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: bench-subscriber
  namespace: {NAMESPACE}
  annotations:
    kafka.eventing.knative.dev/delivery.order: unordered
spec:
  broker: {BROKER}
  subscriber:
    uri: http://127.0.0.1:{subscriber_port}/
"""


@dataclass(frozen=True)
class Delivery:
    """What the subscriber saw of one run, checked against what was accepted."""

    accepted: int  # 2xx answers wrk counted (202 from the ingress)
    sent: int  # requests wrk wrote, answered or still in flight when it stopped
    unique: int  # distinct ce-ids the subscriber received
    duplicates: int
    first_sent_us: int
    last_received_us: int
    latency_ms: Mapping[str, float]

    @property
    def lost(self) -> int:
        """Accepted events never delivered (counts: every 202 must arrive at least once)."""
        return max(0, self.accepted - self.unique)

    @property
    def phantom(self) -> int:
        """Deliveries of ids that were never sent: a counting bug, treated as an error."""
        return max(0, self.unique - self.sent)

    @property
    def delivered_per_s(self) -> float:
        span_us = self.last_received_us - self.first_sent_us
        return self.unique / (span_us / 1e6) if span_us > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        return {
            "delivered_per_s": self.delivered_per_s,
            "delivery_p50_ms": self.latency_ms.get("p50", 0.0),
            "delivery_p99_ms": self.latency_ms.get("p99", 0.0),
            # Every percentile the subscriber kept (p10 ... p99_9, max): the distribution chart.
            **{f"delivery_{k}_ms": v for k, v in self.latency_ms.items()},
            "delivered": float(self.unique),
            "duplicates": float(self.duplicates),
            "lost": float(self.lost),
            "phantom": float(self.phantom),
        }

    @classmethod
    def from_stats(cls, wrk: WrkResult, stats: Mapping[str, Any]) -> Delivery:
        return cls(
            accepted=wrk.ok,
            sent=wrk.sent,
            unique=int(stats["unique"]),
            duplicates=int(stats["duplicates"]),
            first_sent_us=int(stats["first_sent_us"]),
            last_received_us=int(stats["last_received_us"]),
            latency_ms={k: float(v) for k, v in stats["latency_ms"].items()},
        )


class DeliveryCounter(Protocol):
    """What a subscriber has received: ``stats(run_id)`` (RunStats.summary) and bad records."""

    @property
    def malformed(self) -> int: ...

    def stats(self, run_id: str) -> Mapping[str, Any]: ...


class HttpStats:
    """The aiohttp subscriber counts in its own process: ``GET /stats?run=ID``."""

    malformed = 0

    def __init__(self, port: int) -> None:
        self.port = port

    def stats(self, run_id: str) -> Mapping[str, Any]:
        url = f"http://127.0.0.1:{self.port}/stats?run={run_id}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            stats: dict[str, Any] = json.load(resp)
        return stats


def wait_for_delivery(
    stats: Callable[[str], Mapping[str, Any]],
    run_id: str,
    accepted: int,
    timeout_s: float,
    settle_s: float = 0.5,
) -> Mapping[str, Any]:
    """Poll the subscriber until it has every accepted event and its count stops moving."""
    deadline = time.monotonic() + timeout_s
    last_unique, last_change = -1, time.monotonic()
    while True:
        current = stats(run_id)
        now = time.monotonic()
        if current["unique"] != last_unique:
            last_unique, last_change = current["unique"], now
        if current["unique"] >= accepted and now - last_change >= settle_s:
            return current
        if now >= deadline:
            return current  # the caller reports the shortfall as loss
        time.sleep(0.1)


@dataclass(frozen=True)
class Setup:
    """One subscriber and the broker in front of it."""

    kind: SubscriberKind
    subscriber: Server
    broker: Server  # on the sqlite log
    counter: DeliveryCounter
    # Per server-backed log: the broker on it and the log's server.
    server_brokers: Mapping[str, tuple[Server, Server]]

    @property
    def path(self) -> str:
        return f"/{NAMESPACE}/{BROKER}"

    def broker_for(self, row_kind: str) -> Server:
        if row_kind in self.server_brokers:
            return self.server_brokers[row_kind][0]
        return self.broker

    def url(self, row_kind: str) -> str:
        if row_kind == "direct":
            return f"http://127.0.0.1:{self.subscriber.port}/"
        return f"http://127.0.0.1:{self.broker_for(row_kind).port}{self.path}"

    def servers(self, row_kind: str) -> list[Server]:
        if row_kind == "direct":
            return [self.subscriber]
        if row_kind in self.server_brokers:
            broker, log_server = self.server_brokers[row_kind]
            return [broker, self.subscriber, log_server]
        return [self.broker, self.subscriber]


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, list[str], list[str]]:
    """The shared flags plus ``--subscriber`` (repeatable; default: both, Cascade first) and
    ``--log`` (repeatable server-backed logs beside sqlite; default: nats)."""
    parser = build_parser(NAME, __doc__.split("\n")[0] if __doc__ else NAME)
    parser.add_argument(
        "--subscriber",
        action="append",
        choices=list(SUBSCRIBERS),
        help="measure only this subscriber (repeatable): cascade, the headline (a Cascade "
        "function under cascade serve), or aiohttp (the bare ceiling); default: both",
    )
    parser.add_argument(
        "--log",
        action="append",
        choices=list(SERVER_LOGS),
        help="also measure the broker on this server-backed log (repeatable): nats (its own "
        "nats-server with JetStream) or kafka (Tansu); the sqlite row always runs; "
        f"default: {', '.join(DEFAULT_SERVER_LOGS)}",
    )
    args = parser.parse_args(argv)
    chosen = [s for s in SUBSCRIBERS if s in (args.subscriber or SUBSCRIBERS)]
    logs = [log for log in SERVER_LOGS if log in (args.log or DEFAULT_SERVER_LOGS)]
    # A run of one subscriber writes its own file, not the one of the full comparison.
    name = NAME if len(chosen) == len(SUBSCRIBERS) else f"{NAME}.{chosen[0]}"
    return options_from(args, name), chosen, logs


def main(argv: Sequence[str] | None = None) -> int:
    options, subscribers, logs = parse_args(argv)
    try:
        return _run(options, subscribers, logs)
    except BenchError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr, flush=True)
        return 1


def _run(options: Options, subscribers: list[str], logs: list[str]) -> int:
    wrk = ensure_wrk()
    started = time.monotonic()
    kinds = row_kinds(logs)
    progress(
        f"==> {NAME}: subscribers {', '.join(subscribers)}; logs sqlite"
        f"{''.join(', ' + log for log in logs)}; {options.runs} interleaved runs x "
        f"{options.duration_s:g}s per row, {options.connections} connections"
    )
    drain_timeout_s = max(30.0, 6 * options.duration_s)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cascade-bench-")))
        sink_port = None
        if "cascade" in subscribers:
            sink_port = start_sink(stack, workdir)
        setups: dict[str, Setup] = {}
        for key in subscribers:
            setups[key] = _start(stack, SUBSCRIBERS[key], options, workdir, sink_port, logs)
        for setup in setups.values():
            _check_paths(setup)

        def one(key: str, _run: int, duration_s: float | None = None) -> Measurement:
            subscriber, _, kind = key.partition("-")
            setup = setups[subscriber]
            expected = setup.kind.direct_status if kind == "direct" else 202

            def settle(result: WrkResult, run_id: str) -> dict[str, float]:
                stats = wait_for_delivery(setup.counter.stats, run_id, result.ok, drain_timeout_s)
                return Delivery.from_stats(result, stats).metrics()

            def attempt() -> Measurement:
                return measure(
                    wrk,
                    setup.servers(kind),
                    setup.url(kind),
                    options,
                    workdir,
                    duration_s=duration_s,
                    connections=PACED_CONNECTIONS if kind == "paced" else None,
                    pace_ms=PACE_MS if kind == "paced" else 0,
                    expected_statuses=frozenset({expected}),
                    settle=settle,
                )

            # The paced row measures latency under light load, where one worker may well
            # serve its 4 connections alone: only the loaded rows are measured again.
            m = attempt() if kind == "paced" else measure_all_workers(attempt)
            s = m.sample()
            progress(
                f"    {_fmt(s['requests_per_s'], 0)} req/s answered, "
                f"{_fmt(s['delivered_per_s'], 0)} events/s delivered, "
                f"delivery p50 {_fmt(s['delivery_p50_ms'], 2)} ms p99 "
                f"{_fmt(s['delivery_p99_ms'], 2)} ms, lost {s['lost']:.0f}, "
                + ", ".join(
                    f"{name} {_fmt(s[f'cpu_us_per_request.{name}'], 0)} µs CPU/event"
                    for name in (server.name for server in setup.servers(kind))
                )
                + (f", {m.errors} ERRORS" if m.errors else "")
            )
            return m

        if options.warmup_s > 0:
            for key in subscribers:
                exported = exported_requests(sink_port) if key == "cascade" and sink_port else 0
                for kind in ("direct", "broker", *logs):
                    progress(f"--> warm-up {options.warmup_s:g}s: {row_key(key, kind)}")
                    one(row_key(key, kind), 0, options.warmup_s)
                if key == "cascade" and sink_port:
                    wait_for_export(sink_port, exported, "cascade subscriber")
        keys = [row_key(s, kind) for s in subscribers for kind in kinds]
        results = run_interleaved(keys, options.runs, one)
        malformed = sum(setup.counter.malformed for setup in setups.values())
    return _report(options, subscribers, logs, results, malformed, time.monotonic() - started)


def _start(
    stack: contextlib.ExitStack,
    kind: SubscriberKind,
    options: Options,
    workdir: Path,
    sink_port: int | None,
    logs: Sequence[str],
) -> Setup:
    """Start one subscriber and the brokers (one per log) whose only Trigger delivers to it."""
    port = free_port()
    progress(f"--> starting the {kind.key} subscriber on 127.0.0.1:{port}")
    counter: DeliveryCounter
    if kind.key == "cascade":
        if sink_port is None:
            raise BenchError("the cascade subscriber needs the OTLP sink")
        deliveries = workdir / "deliveries"
        deliveries.mkdir()
        counter = DeliveryFiles(deliveries)
        env = {
            # As in the function benchmark: dedupe off, tracing exported to the dropping sink.
            "CASCADE_IDEMPOTENCY": "false",
            **exporter_env(sink_port),
            DELIVERY_DIR_ENV: str(deliveries),
        }
        argv = cascade_argv(
            "serve",
            CASCADE_SUBSCRIBER,
            "--port",
            str(port),
            "--workers",
            str(options.workers),
            "--threads",
            "1",
            "--data-dir",
            str(workdir / "subscriber-data"),
        )
    else:
        env = {}
        argv = [sys.executable, "-m", "bench.apps.subscriber", "--port", str(port)]
        counter = HttpStats(port)
    subscriber = stack.enter_context(
        Server(f"{kind.key}-subscriber", argv, port=port, log_dir=workdir, env=env)
    )
    subscriber.wait_listening()

    manifest = workdir / f"{kind.key}-broker.yaml"
    manifest.write_text(manifests(port))
    broker = _start_broker(stack, workdir, manifest, f"{kind.key}-broker", ["--log", "sqlite"])
    server_brokers: dict[str, tuple[Server, Server]] = {}
    for log in logs:
        log_server, log_args = _start_log_server(stack, workdir, log_server_name(kind.key, log))
        server_brokers[log] = (
            _start_broker(stack, workdir, manifest, broker_name(kind.key, log), log_args),
            log_server,
        )
    return Setup(kind, subscriber, broker, counter, server_brokers)


def _start_broker(
    stack: contextlib.ExitStack, workdir: Path, manifest: Path, name: str, log_args: list[str]
) -> Server:
    port = free_port()
    progress(f"--> starting cascade broker {name} on 127.0.0.1:{port} ({' '.join(log_args)})")
    broker = stack.enter_context(
        Server(
            name,
            cascade_argv(
                "broker",
                "-f",
                str(manifest),
                "--port",
                str(port),
                "--data-dir",
                str(workdir / f"{name}-data"),
                *log_args,
            ),
            port=port,
            log_dir=workdir,
        )
    )
    broker.wait_listening()
    return broker


def _start_log_server(
    stack: contextlib.ExitStack, workdir: Path, name: str
) -> tuple[Server, list[str]]:
    """A fresh nats-server (JetStream, file store) or Tansu; the broker arguments reaching it."""
    port = free_port()
    if name.endswith("-nats-server"):
        argv = [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port)]
        argv += ["-sd", str(workdir / f"{name}-store")]
        log_args = ["--log", "nats", "--nats-url", f"nats://127.0.0.1:{port}"]
    else:
        url = f"tcp://127.0.0.1:{port}"
        argv = [str(tansu_binary()), "broker", "--listener-url", url]
        argv += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        log_args = ["--log", "kafka", "--bootstrap-servers", f"127.0.0.1:{port}"]
    progress(f"--> starting {name} on 127.0.0.1:{port}")
    server = stack.enter_context(Server(name, argv, port=port, log_dir=workdir))
    server.wait_listening()
    return server, log_args


def _check_paths(setup: Setup) -> None:
    """One event straight to the subscriber, one through the broker: answered and counted."""
    probes = [("direct", setup.subscriber.port, "/", setup.kind.direct_status)]
    probes += [
        (row_kind, setup.broker_for(row_kind).port, setup.path, 202)
        for row_kind in ("broker", *setup.server_brokers)
    ]
    for row_kind, port, path, status in probes:
        run_id = fresh_run_id()
        got, _, body = post_event(port, path, DEFAULT_EVENT, ce_id=f"{run_id}-probe-1")
        where = f"{setup.kind.key} subscriber, {row_kind}"
        if got != status:
            raise BenchError(f"{where}: the probe got HTTP {got}, not {status}: {body[:300]!r}")
        stats = wait_for_delivery(setup.counter.stats, run_id, 1, timeout_s=30.0, settle_s=0.0)
        if stats["unique"] < 1:
            raise BenchError(f"{where}: the probe was answered {got} but not counted in 30s")


def _cpu(med: Mapping[str, float], server: str) -> str:
    value = med.get(f"cpu_us_per_request.{server}")
    return _fmt(value, 0) if value is not None else "-"


def _report(
    options: Options,
    subscribers: list[str],
    logs: list[str],
    results: dict[str, list[Measurement]],
    malformed: int,
    elapsed: float,
) -> int:
    med = {key: medians([m.sample() for m in ms]) for key, ms in results.items()}
    lost = {key: sum(int(m.extra.get("lost", 0)) for m in ms) for key, ms in results.items()}
    phantom = {key: sum(int(m.extra.get("phantom", 0)) for m in ms) for key, ms in results.items()}
    errors = {key: sum(m.errors for m in ms) for key, ms in results.items()}
    kinds = row_kinds(logs)
    keys = [(s, kind, row_key(s, kind)) for s in subscribers for kind in kinds]

    def vs_direct(subscriber: str, kind: str, key: str) -> str:
        direct = med[row_key(subscriber, "direct")]["requests_per_s"]
        if not direct or kind == "paced":  # paced load: latency, not throughput
            return "-"
        return f"{med[key]['delivered_per_s'] / direct:.2f}x"

    table = markdown_table(
        [
            "path",
            "answered req/s",
            "delivered events/s",
            "vs direct",
            "req p50/p99 ms",
            "delivery p50/p99 ms",
            "broker CPU µs/event",
            "subscriber CPU µs/event",
            "log server CPU µs/event",
            "lost",
            "dup",
            "errors",
        ],
        [
            [
                row_label(s, kind),
                _fmt(med[key]["requests_per_s"], 0),
                _fmt(med[key]["delivered_per_s"], 0),
                vs_direct(s, kind, key),
                f"{med[key]['p50_ms']:.2f} / {med[key]['p99_ms']:.2f}",
                f"{med[key]['delivery_p50_ms']:.2f} / {med[key]['delivery_p99_ms']:.2f}",
                _cpu(med[key], broker_name(s, kind)),
                _cpu(med[key], f"{s}-subscriber"),
                _cpu(med[key], log_server_name(s, kind)),
                str(lost[key]),
                str(sum(int(m.extra.get("duplicates", 0)) for m in results[key])),
                str(errors[key] + phantom[key]),
            ]
            for s, kind, key in keys
        ],
    )
    ratios: list[Ratio] = []
    for s in subscribers:
        direct, broker = med[row_key(s, "direct")], med[row_key(s, "broker")]
        ratios.append(
            Ratio.of(
                f"{s} subscriber: broker delivered events/s / direct req/s",
                (row_key(s, "broker"), broker["delivered_per_s"]),
                (row_key(s, "direct"), direct["requests_per_s"]),
                TARGET_VS_DIRECT[s],
            )
        )
    for s in subscribers:
        for log in logs:
            # How the server-backed log compares with sqlite in the same run: within 2x.
            ratios.append(
                Ratio.of(
                    f"{s} subscriber: {log} broker delivered events/s / sqlite broker",
                    (row_key(s, log), med[row_key(s, log)]["delivered_per_s"]),
                    (row_key(s, "broker"), med[row_key(s, "broker")]["delivered_per_s"]),
                    TARGET_SERVER_LOG_VS_SQLITE,
                )
            )
    for s in subscribers:
        # What one event costs the broker, in units of what the subscriber spends on one
        # request it gets straight from wrk (CPU: steadier than req/s on shared cores).
        ratios.append(
            Ratio.of(
                f"{s} subscriber: broker CPU/event / subscriber direct CPU/req",
                (f"{s}-broker", med[row_key(s, "broker")].get(f"cpu_us_per_request.{s}-broker", 0)),
                (
                    f"{s}-subscriber",
                    med[row_key(s, "direct")].get(f"cpu_us_per_request.{s}-subscriber", 0),
                ),
            )
        )
    limits = [
        Limit(
            f"{s} subscriber: broker CPU per event (sqlite)",
            med[row_key(s, "broker")].get(f"cpu_us_per_request.{s}-broker", 0.0),
            LIMIT_BROKER_CPU_US,
            "µs",
        )
        for s in subscribers
    ]
    lost_by_subscriber = {s: sum(lost[row_key(s, kind)] for kind in kinds) for s in subscribers}
    total_lost = sum(lost.values())
    check_rows = (
        [
            [q.name, f"{q.value:.2f}x", f">= {q.target:g}x" if q.target else "-", q.verdict]
            for q in ratios
        ]
        + [
            [q.name, f"{q.value:.0f} {q.unit}", f"<= {q.limit:g} {q.unit}", q.verdict]
            for q in limits
        ]
        + [
            [f"{s} subscriber: accepted events lost", str(n), "0", "PASS" if not n else "FAIL"]
            for s, n in lost_by_subscriber.items()
        ]
    )
    ratio_table = markdown_table(["check", "value", "target", "verdict"], check_rows)
    print(
        f"\n## {NAME} ({utc_now()}; medians of {options.runs} interleaved runs x "
        f"{options.duration_s:g}s, {options.connections} connections, subscriber workers "
        f"{options.workers})\n\n{table}\n\n{ratio_table}\n",
        flush=True,
    )
    for s in subscribers:
        runs = [m.sample()["requests_per_s"] for m in results[row_key(s, "direct")]]
        note = noise_note(f"the {s} subscriber's direct req/s", runs)
        if note:
            print(note + "\n", flush=True)
    total_errors = sum(errors.values()) + sum(phantom.values()) + malformed
    header = result_header(NAME, elapsed, options, REPO_ROOT)
    payload = {
        **header,
        "settings": {
            **header["settings"],
            "broker": {"log": "sqlite", "trigger": "unordered", "path": f"/{NAMESPACE}/{BROKER}"},
            "server_logs": {log: SERVER_LOGS[log] for log in logs},
            "subscribers": {
                "cascade": f"cascade serve {CASCADE_SUBSCRIBER}, gunicorn gthread "
                f"x{options.workers}, 1 thread, idempotency off, tracing exported",
                "aiohttp": "bench/apps/subscriber.py, aiohttp, one process",
            },
            "measured": subscribers,
            "event_bytes": DEFAULT_EVENT.wire_size(),
            "quick": options.quick,
        },
        "rows": [
            {
                "key": key,
                "label": row_label(s, kind),
                "median": med[key],
                "spread_requests_per_s": round(
                    spread([m.sample()["requests_per_s"] for m in results[key]]), 3
                ),
                "lost": lost[key],
                "errors": errors[key] + phantom[key],
                "one_worker_runs_set_aside": set_aside(results[key]),
                "runs": [m.as_dict() for m in results[key]],
            }
            for s, kind, key in keys
        ],
        "ratios": [q.as_dict() for q in ratios],
        # Zero loss as a ceiling of 0, so bench.summary lists it with the other targets.
        "limits": [q.as_dict() for q in limits]
        + [
            Limit(f"{s} subscriber: accepted events lost", n, 0, "events").as_dict()
            for s, n in lost_by_subscriber.items()
        ],
        "lost": total_lost,
        "malformed_delivery_records": malformed,
        "errors": total_errors,
    }
    failure = (
        f"{total_lost} accepted events lost, "
        f"{total_errors} failed requests or unexpected deliveries"
        if total_lost or total_errors
        else None
    )
    return finish(options.out, payload, elapsed, failure)


if __name__ == "__main__":
    sys.exit(main())

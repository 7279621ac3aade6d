"""Benchmark: events through ``cascade broker`` against the subscriber's own direct throughput.

Rows, same run, same load (wrk, one binary CloudEvent per request, unique ``ce-id``):
  direct  wrk -> subscriber (aiohttp, counts what it receives)
  broker  wrk -> broker ingress /<ns>/<broker> -> sqlite log -> unordered Trigger -> subscriber
For the broker row the subscriber's counts give delivered events/s (first send to last receipt)
and delivery latency (send time carried in the ``benchsentus`` extension to receipt), and they
prove zero loss: every event the ingress accepted with 202 arrives at least once.
Target: broker delivered events/s >= 0.5x direct requests/s, zero loss.

``python -m bench.broker_throughput [--quick] [--duration S] [--connections N] [--runs N]``
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._cli import Options, parse_options
from bench._load import Measurement, fresh_run_id, measure
from bench._report import (
    Ratio,
    machine_info,
    markdown_table,
    medians,
    noise_note,
    progress,
    run_interleaved,
    source_revision,
    spread,
    utc_now,
    write_json,
)
from bench._servers import REPO_ROOT, Server, cascade_argv, free_port, post_event
from bench._wrk import DEFAULT_EVENT, BenchError, WrkResult, ensure_wrk

NAME = "broker_throughput"
NAMESPACE = "bench"
BROKER = "default"
TARGET_VS_DIRECT = 0.5

# The paced row measures the latency the hop adds under light load, without queueing:
# PACED_CONNECTIONS connections, each waiting PACE_MS before every request.
PACED_CONNECTIONS = 4
PACE_MS = 10

ROWS = {
    "direct": "subscriber direct (wrk -> subscriber)",
    "broker": "cascade broker, sqlite log, unordered Trigger",
    "broker-paced": f"same broker, paced load ({PACED_CONNECTIONS} conns x {PACE_MS} ms gaps)",
}


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
    """What the subscriber saw of one run, checked against what the ingress accepted."""

    accepted: int  # 202 answers wrk counted
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
            "delivered": float(self.unique),
            "duplicates": float(self.duplicates),
            "lost": float(self.lost),
            "phantom": float(self.phantom),
        }

    @classmethod
    def from_stats(cls, wrk: WrkResult, stats: Mapping[str, Any]) -> Delivery:
        return cls(
            accepted=wrk.statuses.get(202, 0),
            sent=wrk.sent,
            unique=int(stats["unique"]),
            duplicates=int(stats["duplicates"]),
            first_sent_us=int(stats["first_sent_us"]),
            last_received_us=int(stats["last_received_us"]),
            latency_ms={k: float(v) for k, v in stats["latency_ms"].items()},
        )


def _subscriber_stats(port: int, run_id: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/stats?run={run_id}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        stats: dict[str, Any] = json.load(resp)
    return stats


def wait_for_delivery(
    subscriber_port: int, run_id: str, accepted: int, timeout_s: float, settle_s: float = 0.5
) -> dict[str, Any]:
    """Poll the subscriber until it has every accepted event and its count stops moving."""
    deadline = time.monotonic() + timeout_s
    last_unique, last_change = -1, time.monotonic()
    while True:
        stats = _subscriber_stats(subscriber_port, run_id)
        now = time.monotonic()
        if stats["unique"] != last_unique:
            last_unique, last_change = stats["unique"], now
        if stats["unique"] >= accepted and now - last_change >= settle_s:
            return stats
        if now >= deadline:
            return stats  # the caller reports the shortfall as loss
        time.sleep(0.1)


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(NAME, __doc__.split("\n")[0] if __doc__ else NAME, argv)
    try:
        return _run(options)
    except BenchError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr, flush=True)
        return 1


def _run(options: Options) -> int:
    wrk = ensure_wrk()
    started = time.monotonic()
    progress(
        f"==> {NAME}: {options.runs} interleaved runs x {options.duration_s:g}s per row, "
        f"{options.connections} connections"
    )
    drain_timeout_s = max(30.0, 6 * options.duration_s)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cascade-bench-")))
        sub_port = free_port()
        subscriber = stack.enter_context(
            Server(
                "subscriber",
                [sys.executable, "-m", "bench.apps.subscriber", "--port", str(sub_port)],
                port=sub_port,
                log_dir=workdir,
            )
        )
        subscriber.wait_listening()

        manifest = workdir / "broker.yaml"
        manifest.write_text(manifests(sub_port))
        broker_port = free_port()
        progress(f"--> starting cascade broker on 127.0.0.1:{broker_port} (sqlite log)")
        broker = stack.enter_context(
            Server(
                "broker",
                cascade_argv(
                    "broker",
                    "-f",
                    str(manifest),
                    "--port",
                    str(broker_port),
                    "--log",
                    "sqlite",
                    "--data-dir",
                    str(workdir / "broker-data"),
                ),
                port=broker_port,
                log_dir=workdir,
            )
        )
        broker.wait_listening()
        path = f"/{NAMESPACE}/{BROKER}"
        _check_path(broker_port, path, sub_port)

        urls = {
            "direct": f"http://127.0.0.1:{sub_port}/",
            "broker": f"http://127.0.0.1:{broker_port}{path}",
            "broker-paced": f"http://127.0.0.1:{broker_port}{path}",
        }
        loaded = {key: [broker, subscriber] for key in urls} | {"direct": [subscriber]}

        def one(key: str, _run: int, duration_s: float | None = None) -> Measurement:
            def settle(result: WrkResult, run_id: str) -> dict[str, float]:
                accepted = result.statuses.get(202, 0)
                stats = wait_for_delivery(sub_port, run_id, accepted, drain_timeout_s)
                return Delivery.from_stats(result, stats).metrics()

            m = measure(
                wrk,
                loaded[key],
                urls[key],
                options,
                workdir,
                duration_s=duration_s,
                connections=PACED_CONNECTIONS if key == "broker-paced" else None,
                pace_ms=PACE_MS if key == "broker-paced" else 0,
                settle=settle,
            )
            s = m.sample()
            progress(
                f"    {_fmt(s['requests_per_s'], 0)} req/s accepted, "
                f"{_fmt(s['delivered_per_s'], 0)} events/s delivered, "
                f"delivery p50 {_fmt(s['delivery_p50_ms'], 2)} ms p99 "
                f"{_fmt(s['delivery_p99_ms'], 2)} ms, lost {s['lost']:.0f}"
                + (f", {m.errors} ERRORS" if m.errors else "")
            )
            return m

        if options.warmup_s > 0:
            for key in ("direct", "broker"):
                progress(f"--> warm-up {options.warmup_s:g}s: {key}")
                one(key, 0, options.warmup_s)
        results = run_interleaved(list(ROWS), options.runs, one)
    return _report(options, results, time.monotonic() - started)


def _check_path(broker_port: int, path: str, sub_port: int) -> None:
    """One event through the broker before any load: 202 at ingress, then delivered."""
    run_id = fresh_run_id()
    status, _, body = post_event(broker_port, path, DEFAULT_EVENT, ce_id=f"{run_id}-probe-1")
    if status != 202:
        raise BenchError(f"broker ingress {path} answered {status}, not 202: {body[:300]!r}")
    stats = wait_for_delivery(sub_port, run_id, 1, timeout_s=30.0, settle_s=0.0)
    if stats["unique"] < 1:
        raise BenchError("the probe event was accepted by the broker but not delivered in 30s")


def _report(options: Options, results: dict[str, list[Measurement]], elapsed: float) -> int:
    med = {key: medians([m.sample() for m in ms]) for key, ms in results.items()}
    lost = {key: sum(int(m.extra.get("lost", 0)) for m in ms) for key, ms in results.items()}
    phantom = {key: sum(int(m.extra.get("phantom", 0)) for m in ms) for key, ms in results.items()}
    errors = {key: sum(m.errors for m in ms) for key, ms in results.items()}
    direct = med["direct"]["requests_per_s"]

    table = markdown_table(
        [
            "path",
            "accepted req/s",
            "delivered events/s",
            "vs direct",
            "req p50/p99 ms",
            "delivery p50/p99 ms",
            "CPU µs/event",
            "lost",
            "dup",
            "errors",
        ],
        [
            [
                label,
                _fmt(med[key]["requests_per_s"], 0),
                _fmt(med[key]["delivered_per_s"], 0),
                f"{med[key]['delivered_per_s'] / direct:.2f}x"
                if direct and key != "broker-paced"  # paced load: latency, not throughput
                else "-",
                f"{med[key]['p50_ms']:.2f} / {med[key]['p99_ms']:.2f}",
                f"{med[key]['delivery_p50_ms']:.2f} / {med[key]['delivery_p99_ms']:.2f}",
                _fmt(med[key]["cpu_us_per_request"], 0),
                str(lost[key]),
                str(sum(int(m.extra.get("duplicates", 0)) for m in results[key])),
                str(errors[key]),
            ]
            for key, label in ROWS.items()
        ],
    )
    ratio = Ratio.of(
        "broker delivered events/s / direct req/s",
        ("broker", med["broker"]["delivered_per_s"]),
        ("direct", direct),
        TARGET_VS_DIRECT,
    )
    total_lost = sum(lost.values())
    ratio_table = markdown_table(
        ["check", "value", "target", "verdict"],
        [
            [ratio.name, f"{ratio.value:.2f}x", f">= {TARGET_VS_DIRECT:g}x", ratio.verdict],
            [
                "accepted (202) events lost",
                str(total_lost),
                "0",
                "PASS" if not total_lost else "FAIL",
            ],
        ],
    )
    print(
        f"\n## {NAME} ({utc_now()}; medians of {options.runs} interleaved runs x "
        f"{options.duration_s:g}s, {options.connections} connections)\n\n"
        f"{table}\n\n{ratio_table}\n",
        flush=True,
    )
    direct_runs = [m.sample()["requests_per_s"] for m in results["direct"]]
    note = noise_note("the direct req/s", direct_runs)
    if note:
        print(note + "\n", flush=True)
    total_errors = sum(errors.values()) + sum(phantom.values())
    payload = {
        "benchmark": NAME,
        "date": utc_now(),
        "elapsed_s": round(elapsed, 1),
        "machine": machine_info(),
        "source": source_revision(REPO_ROOT),
        "settings": {
            "duration_s": options.duration_s,
            "runs": options.runs,
            "connections": options.connections,
            "wrk_threads": options.threads,
            "warmup_s": options.warmup_s,
            "broker": {"log": "sqlite", "trigger": "unordered", "path": f"/{NAMESPACE}/{BROKER}"},
            "subscriber": "aiohttp, one process",
            "event_bytes": DEFAULT_EVENT.wire_size(),
            "quick": options.quick,
        },
        "rows": [
            {
                "key": key,
                "label": label,
                "median": med[key],
                "spread_requests_per_s": round(
                    spread([m.sample()["requests_per_s"] for m in results[key]]), 3
                ),
                "lost": lost[key],
                "errors": errors[key],
                "runs": [m.as_dict() for m in results[key]],
            }
            for key, label in ROWS.items()
        ],
        "ratios": [ratio.as_dict()],
        "lost": total_lost,
        "errors": total_errors,
    }
    write_json(options.out, payload)
    progress(f"==> wrote {options.out} ({elapsed:.0f}s)")
    if total_lost or total_errors:
        print(
            f"ERROR: {total_lost} accepted events lost, {total_errors} failed requests or "
            "unexpected deliveries",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

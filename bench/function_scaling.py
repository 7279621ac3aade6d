"""Benchmark: function throughput over 1-4 gunicorn workers, Cascade against bare Flask.

Rows (all under gunicorn with the runtime's preset: gthread, its threads per worker, loopback),
one pair per worker count N:
  cascade-wN     ``cascade serve bench/apps/cascade_function.py --workers N --threads T``,
                 validation + tracing + metrics on, idempotency off (the function benchmark's
                 Cascade row)
  bare-flask-wN  bare Flask answering 202 under gunicorn with N workers: the reference
All rows run interleaved in the same run. After the load, the RSS (VmRSS) of every Cascade
worker is read from /proc. Target: at most 80 MB per Cascade worker. The throughput ratios
(Cascade / bare Flask at the same N, N workers / 1 worker) have no target: the curve is the
result (on a 2-core machine shared with wrk it flattens past 2 workers).

``python -m bench.function_scaling [--quick] [--workers 1,2,3,4] [--duration S] [--runs N]``
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._cli import Options, build_parser, options_from
from bench._load import Measurement
from bench._memory import child_pids, rss_bytes, status_kib
from bench._otlp import exported_requests, exporter_env, start_sink, wait_for_export
from bench._report import (
    Limit,
    Ratio,
    failed_requests,
    finish,
    markdown_table,
    medians,
    noise_note,
    progress,
    result_header,
    row_result,
    run_interleaved,
    set_aside,
    utc_now,
)
from bench._servers import (
    REPO_ROOT,
    Server,
    cascade_argv,
    free_port,
    gunicorn_argv,
    runtime_gunicorn_setup,
)
from bench._wrk import PING_TYPE, BenchError, ensure_wrk
from bench.function_throughput import CASCADE_FUNCTION, Row, check_answer, measure_row

NAME = "function_scaling"
DEFAULT_WORKER_COUNTS = (1, 2, 3, 4)
MAX_WORKERS = 16
# Resident memory of one Cascade worker after load, VmRSS in MB (10^6 bytes).
LIMIT_WORKER_RSS_MB = 80.0

SERIES = {
    "cascade": ("Cascade (tracing + metrics on, idempotency off), 204", 204),
    "bare-flask": ("bare Flask, 202", 202),
}


def row_key(series: str, workers: int) -> str:
    return f"{series}-w{workers}"


def worker_counts(text: str) -> tuple[int, ...]:
    """``1,2,3,4``: distinct worker counts from 1 to MAX_WORKERS, measured in ascending order."""
    counts: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdecimal() or not 1 <= int(part) <= MAX_WORKERS:
            raise argparse.ArgumentTypeError(
                f"worker counts are integers from 1 to {MAX_WORKERS}, comma-separated; got {text!r}"
            )
        if int(part) in counts:
            raise argparse.ArgumentTypeError(f"worker count {part} is repeated in {text!r}")
        counts.append(int(part))
    return tuple(sorted(counts))


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, tuple[int, ...]]:
    parser = build_parser(NAME, __doc__.split("\n")[0] if __doc__ else NAME, workers_flag=False)
    parser.add_argument(
        "--workers",
        dest="worker_counts",
        type=worker_counts,
        default=DEFAULT_WORKER_COUNTS,
        metavar="LIST",
        help="comma-separated gunicorn worker counts, each a Cascade and a bare Flask row "
        f"(default {','.join(map(str, DEFAULT_WORKER_COUNTS))}; 1 to {MAX_WORKERS} each)",
    )
    args = parser.parse_args(argv)
    return options_from(args, NAME), args.worker_counts


def main(argv: Sequence[str] | None = None) -> int:
    options, counts = parse_args(argv)
    try:
        return _run(options, counts)
    except BenchError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr, flush=True)
        return 1


def _argv(series: str, workers: int, data_dir: Path) -> Callable[[int], list[str]]:
    # Both series on the runtime's preset: sync for one and gthread for the other would
    # compare connection handling (sync closes after each answer), not the frameworks.
    setup = runtime_gunicorn_setup(workers)
    if series == "bare-flask":
        return lambda port: gunicorn_argv("bench.apps.bare_flask:app", port, setup=setup)
    return lambda port: cascade_argv(
        "serve",
        CASCADE_FUNCTION,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(setup.threads),
        "--data-dir",
        str(data_dir / f"w{workers}"),
    )


def _setup_text() -> str:
    setup = runtime_gunicorn_setup(1)
    return f"gunicorn {setup.worker_class} x{setup.threads} threads per worker"


@dataclass(frozen=True)
class Memory:
    """Resident memory of one server after the load: its master and each worker, in MB."""

    master_mb: float
    workers_mb: tuple[float, ...]
    # RssAnon of each worker: its own heap, without the mapped files (libraries) in VmRSS.
    workers_anon_mb: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "master_mb": self.master_mb,
            "workers_mb": list(self.workers_mb),
            "workers_anon_mb": list(self.workers_anon_mb),
        }


def server_memory(pid: int) -> Memory:
    """VmRSS of a gunicorn master ``pid`` and of each of its workers (RssAnon too)."""
    master = rss_bytes(pid)
    if master is None:
        raise BenchError(f"process {pid} is gone: cannot read its memory")
    workers, anon = [], []
    for child in child_pids(pid):
        rss, anon_kib = rss_bytes(child), status_kib(child, "RssAnon")
        if rss is not None:
            workers.append(rss / 1e6)
            anon.append(anon_kib * 1024 / 1e6 if anon_kib is not None else 0.0)
    return Memory(master / 1e6, tuple(workers), tuple(anon))


def _run(options: Options, counts: tuple[int, ...]) -> int:
    wrk = ensure_wrk()
    started = time.monotonic()
    progress(
        f"==> {NAME}: workers {','.join(map(str, counts))}; {options.runs} interleaved runs x "
        f"{options.duration_s:g}s per row, {options.connections} connections, {_setup_text()}"
    )
    rows = [
        Row(
            row_key(series, n),
            f"{label}, {n} worker{'s' if n > 1 else ''}",
            row_key(series, n),
            PING_TYPE,
            status,
        )
        for n in counts
        for series, (label, status) in SERIES.items()
    ]
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cascade-bench-")))
        sink_port = start_sink(stack, workdir)
        env = {**exporter_env(sink_port), "CASCADE_IDEMPOTENCY": "false"}
        servers: dict[str, Server] = {}
        for n in counts:
            for series in SERIES:
                key, port = row_key(series, n), free_port()
                progress(f"--> starting {key} on 127.0.0.1:{port}")
                argv = _argv(series, n, workdir / "data")(port)
                servers[key] = stack.enter_context(
                    Server(key, argv, port=port, log_dir=workdir, env=env)
                )
        for server in servers.values():
            server.wait_listening()
        for row in rows:
            check_answer(row, servers[row.key].port)

        def one(key: str, _run: int, duration_s: float | None = None) -> Measurement:
            row = next(r for r in rows if r.key == key)
            return measure_row(wrk, servers[key], row, options, workdir, duration_s)

        if options.warmup_s > 0:
            for row in rows:
                progress(f"--> warm-up {options.warmup_s:g}s: {row.key}")
                exported = exported_requests(sink_port)
                one(row.key, 0, options.warmup_s)
                if row.key.startswith("cascade-"):
                    wait_for_export(sink_port, exported, row.key)
        results = run_interleaved([r.key for r in rows], options.runs, one)
        # After the load, before stopping: what each server's workers hold now.
        memory = {key: server_memory(server.pid) for key, server in servers.items()}
    return _report(options, counts, rows, results, memory, time.monotonic() - started)


def scaling_ratios(med: Mapping[str, Mapping[str, float]], counts: Sequence[int]) -> list[Ratio]:
    """Per N: Cascade over bare Flask at N workers, and each series at N over itself at 1."""

    def rps(key: str) -> tuple[str, float]:
        return key, med[key]["requests_per_s"]

    ratios = [
        Ratio.of(
            f"{row_key('cascade', n)} / {row_key('bare-flask', n)}",
            rps(row_key("cascade", n)),
            rps(row_key("bare-flask", n)),
        )
        for n in counts
    ]
    first = counts[0]
    for series in SERIES:
        ratios += [
            Ratio.of(
                f"{row_key(series, n)} / {row_key(series, first)}",
                rps(row_key(series, n)),
                rps(row_key(series, first)),
            )
            for n in counts[1:]
        ]
    return ratios


def memory_limit(memory: Mapping[str, Memory]) -> Limit | None:
    """The largest Cascade worker over every worker count, against LIMIT_WORKER_RSS_MB."""
    sizes = [mb for key, m in memory.items() if key.startswith("cascade-") for mb in m.workers_mb]
    if not sizes:
        return None
    return Limit("RSS per Cascade worker after load (max)", max(sizes), LIMIT_WORKER_RSS_MB, "MB")


def _report(
    options: Options,
    counts: tuple[int, ...],
    rows: list[Row],
    results: dict[str, list[Measurement]],
    memory: dict[str, Memory],
    elapsed: float,
) -> int:
    med = {key: medians([m.sample() for m in ms]) for key, ms in results.items()}
    errors = {key: sum(m.errors for m in ms) for key, ms in results.items()}

    def vs(key: str, other: str) -> str:
        base = med[other]["requests_per_s"]
        return f"{med[key]['requests_per_s'] / base:.2f}x" if base else "-"

    missing_workers = []
    table_rows = []
    for n in counts:
        for series in SERIES:
            key = row_key(series, n)
            workers_mb = memory[key].workers_mb
            if len(workers_mb) != n:
                missing_workers.append(f"{key}: {len(workers_mb)} workers found, not {n}")
            table_rows.append(
                [
                    next(r.label for r in rows if r.key == key),
                    f"{med[key]['requests_per_s']:,.0f}",
                    vs(key, row_key(series, counts[0])),
                    vs(key, row_key("bare-flask", n)),
                    f"{med[key]['p50_ms']:.2f} / {med[key]['p99_ms']:.2f}",
                    f"{med[key]['cpu_us_per_request']:,.0f}",
                    " ".join(f"{mb:.0f}" for mb in workers_mb) or "-",
                    str(set_aside(results[key])),
                    str(errors[key]),
                ]
            )
    table = markdown_table(
        [
            "server",
            "req/s",
            f"vs {counts[0]} worker{'s' if counts[0] > 1 else ''}",
            "vs bare Flask",
            "p50 / p99 ms",
            "CPU µs/req",
            "RSS per worker MB",
            "set aside",
            "errors",
        ],
        table_rows,
    )
    ratios = scaling_ratios(med, counts)
    limit = memory_limit(memory)
    limits = [limit] if limit is not None else []
    check_table = markdown_table(
        ["check", "value", "target", "verdict"],
        [[q.name, f"{q.value:.2f}x", "-", q.verdict] for q in ratios]
        + [
            [q.name, f"{q.value:.1f} {q.unit}", f"<= {q.limit:g} {q.unit}", q.verdict]
            for q in limits
        ],
    )
    print(
        f"\n## {NAME} ({utc_now()}; medians of {options.runs} interleaved runs x "
        f"{options.duration_s:g}s, {options.connections} connections, {_setup_text()})\n\n"
        f"{table}\n\n{check_table}\n",
        flush=True,
    )
    for problem in missing_workers:
        print(f"NOTE: {problem} (a worker restarted or had not started)", flush=True)
    base_key = row_key("bare-flask", counts[0])
    note = noise_note(
        f"{base_key} req/s", [m.sample()["requests_per_s"] for m in results[base_key]]
    )
    if note:
        print(note + "\n", flush=True)
    total_errors = sum(errors.values())
    header = result_header(NAME, elapsed, options, REPO_ROOT)
    payload = {
        **header,
        "settings": {
            **header["settings"],
            "gunicorn": {**runtime_gunicorn_setup(1).as_dict(), "workers": list(counts)},
            "quick": options.quick,
        },
        "rows": [
            row_result(
                r.key,
                r.label,
                r.expected_status,
                results[r.key],
                # bench.charts draws a scaling curve of every row that has these two.
                series=r.key.rsplit("-w", 1)[0],
                workers=int(r.key.rsplit("-w", 1)[1]),
                memory=memory[r.key].as_dict(),
            )
            for r in rows
        ],
        "ratios": [q.as_dict() for q in ratios],
        "limits": [q.as_dict() for q in limits],
        "errors": total_errors,
    }
    return finish(options.out, payload, elapsed, failed_requests(total_errors))


if __name__ == "__main__":
    sys.exit(main())

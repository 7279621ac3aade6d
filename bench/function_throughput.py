"""Benchmark: a Cascade function against Flask and cloudevents-SDK baselines, same run, same load.

Rows (all under gunicorn with the runtime's preset: gthread, same workers and threads, loopback):
  (a) bare Flask answering 202
  (b) the cloudevents SDK 2.x ``from_http_event`` handler in Flask answering 202
  (c) (b) plus opentelemetry-instrumentation-flask, BatchSpanProcessor, OTLP/HTTP export
  (d) functions-framework: a ``@functions_framework.cloud_event`` handler validating the data
      into a pydantic model, 200 (in a virtualenv of its own, bench/.venvs/ff; left out with a
      note when it cannot be built, or with ``--no-ff``)
  (e) (d) plus opentelemetry-instrumentation-flask, exported like the Cascade row
  Cascade, validation + tracing + metrics on: pydantic model, 204; the same with a reply event;
  the same with idempotency on: SQLite dedupe (the default) and PostgreSQL dedupe (the
  cluster's configuration; ``--postgres URL``, skipped with a note when unreachable).
Targets: Cascade >= 0.7x (a), >= 1.5x (c), >= 1.0x (d) and >= 1.5x (e), on requests/s
medians of interleaved runs; idempotency on SQLite >= 0.6x (a) and at most 100 CPU µs/req over
idempotency off, on PostgreSQL >= 0.45x (a).

``python -m bench.function_throughput [--quick] [--duration S] [--connections N] [--runs N]
[--postgres URL | --no-postgres] [--no-ff]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench._cli import Options, build_parser, options_from
from bench._load import Measurement, fresh_run_id, measure, measure_all_workers
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
    GunicornSetup,
    Server,
    cascade_argv,
    free_port,
    gunicorn_argv,
    post_event,
    runtime_gunicorn_setup,
)
from bench._venvs import FF_REQUIREMENTS, VENVS_DIR, VenvUnavailable, ensure_venv
from bench._wrk import DEFAULT_EVENT, PING_TYPE, REPLY_TYPE, BenchError, ensure_wrk

NAME = "function_throughput"

# Minimum ratios of Cascade's requests/s (validation, tracing, metrics on) to the baselines.
TARGET_VS_BARE = 0.7
TARGET_VS_SDK_OTEL = 1.5
# The same Cascade row against functions-framework, alone and with its Flask instrumentation.
TARGET_VS_FF = 1.0
TARGET_VS_FF_OTEL = 1.5
# Idempotency on (the default): its rows against (a), and what the SQLite dedupe may add.
TARGET_IDEMPOTENT_VS_BARE = 0.6
TARGET_POSTGRES_VS_BARE = 0.45
LIMIT_DEDUPE_CPU_US = 100.0
# The server .ci/run gives the tests; --postgres overrides it.
DEFAULT_POSTGRES_URL = os.environ.get(
    "CASCADE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server under test; several rows may load the same server."""

    key: str
    argv_for_port: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    traced: bool = False  # exports spans: checked against the OTLP sink after warm-up


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    server: str
    ce_type: str
    expected_status: int
    reply: bool = False  # the answer must carry a reply event (ce-type header)


BASELINE_ROWS = (
    Row("bare-flask", "(a) bare Flask, 202", "bare-flask", PING_TYPE, 202),
    Row("sdk-flask", "(b) cloudevents SDK 2.x in Flask, 202", "sdk-flask", PING_TYPE, 202),
    Row(
        "sdk-otel-flask",
        "(c) (b) + opentelemetry-instrumentation-flask, 202",
        "sdk-otel-flask",
        PING_TYPE,
        202,
    ),
)


def baseline_servers(setup: GunicornSetup) -> list[ServerSpec]:
    def app(module: str) -> Callable[[int], list[str]]:
        return lambda port: gunicorn_argv(f"bench.apps.{module}:app", port, setup=setup)

    return [
        ServerSpec("bare-flask", app("bare_flask")),
        ServerSpec("sdk-flask", app("sdk_flask")),
        ServerSpec("sdk-otel-flask", app("sdk_otel_flask"), traced=True),
    ]


def pinned_version(requirements: Path, package: str) -> str:
    """The ``==`` version of ``package`` in a requirements file ("?" when not pinned there)."""
    for line in requirements.read_text().splitlines():
        name, _, version = line.partition("#")[0].strip().partition("==")
        if name.strip().lower() == package and version:
            return version.strip()
    return "?"


FF_VENV = VENVS_DIR / "ff"
FF_VERSION = pinned_version(FF_REQUIREMENTS, "functions-framework")
FF_ROWS = (
    Row(
        "ff",
        f"(d) functions-framework {FF_VERSION} @cloud_event + pydantic, 200",
        "ff",
        PING_TYPE,
        200,
    ),
    Row("ff-otel", "(e) (d) + opentelemetry-instrumentation-flask, 200", "ff-otel", PING_TYPE, 200),
)


def ff_servers(setup: GunicornSetup, python: Path) -> list[ServerSpec]:
    """The functions-framework peers, on their virtualenv's interpreter, same gunicorn setup."""

    def app(module: str) -> Callable[[int], list[str]]:
        return lambda port: gunicorn_argv(
            f"bench.apps.{module}:app", port, setup=setup, python=python
        )

    return [ServerSpec("ff", app("ff_app")), ServerSpec("ff-otel", app("ff_otel_app"), traced=True)]


CASCADE_FUNCTION = "bench/apps/cascade_function.py"

CASCADE_ROWS = (
    Row(
        "cascade",
        "Cascade: pydantic model, 204 (tracing + metrics on)",
        "cascade",
        PING_TYPE,
        204,
    ),
    Row(
        "cascade-reply",
        "Cascade: pydantic model, reply event 200 (tracing + metrics on)",
        "cascade",
        REPLY_TYPE,
        200,
        reply=True,
    ),
    Row(
        "cascade-idempotent",
        "Cascade + idempotency (SQLite dedupe), 204",
        "cascade-idempotent",
        PING_TYPE,
        204,
    ),
)
POSTGRES_ROW = Row(
    "cascade-postgres",
    "Cascade + idempotency (PostgreSQL dedupe), 204",
    "cascade-postgres",
    PING_TYPE,
    204,
)


def cascade_servers(
    setup: GunicornSetup, data_dir: Path, postgres_url: str | None = None
) -> list[ServerSpec]:
    """``cascade serve`` of the bench function, as a user runs it (the runtime's gunicorn preset).

    Workers and threads are passed explicitly (a ``CASCADE_THREADS`` in the environment must
    not make it differ from the baselines); the first turns dedupe off
    (``CASCADE_IDEMPOTENCY=false``) so it measures validation + tracing + metrics alone.
    """

    def serve(store: str) -> Callable[[int], list[str]]:
        return lambda port: cascade_argv(
            "serve",
            CASCADE_FUNCTION,
            "--port",
            str(port),
            "--workers",
            str(setup.workers),
            "--threads",
            str(setup.threads),
            "--data-dir",
            str(data_dir / store),
        )

    specs = [
        ServerSpec("cascade", serve("plain"), {"CASCADE_IDEMPOTENCY": "false"}, traced=True),
        ServerSpec(
            "cascade-idempotent", serve("dedupe"), {"CASCADE_IDEMPOTENCY": "true"}, traced=True
        ),
    ]
    if postgres_url is not None:
        env = {"CASCADE_IDEMPOTENCY": "true", "DATABASE_URL": postgres_url}
        specs.append(ServerSpec("cascade-postgres", serve("postgres"), env, traced=True))
    return specs


def postgres_reachable(url: str) -> str | None:
    """None when ``url`` answers a query, else why not (the row is then left out)."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def check_answer(row: Row, port: int) -> None:
    """One request before any load: the server must answer the way this row expects."""
    status, headers, body = post_event(
        port, "/", DEFAULT_EVENT, ce_id=f"{fresh_run_id()}-probe-1", ce_type=row.ce_type
    )
    if status != row.expected_status:
        raise BenchError(
            f"{row.key}: probe got HTTP {status} (expected {row.expected_status}): {body[:300]!r}"
        )
    if row.reply and "ce-type" not in headers:
        raise BenchError(f"{row.key}: a reply was expected but the answer has no ce-type header")


def measure_row(
    wrk: str,
    server: Server,
    row: Row,
    options: Options,
    workdir: Path,
    duration_s: float | None = None,
) -> Measurement:
    """One wrk run of ``row``'s event against ``server`` that all its workers served."""
    m = measure_all_workers(
        lambda: measure(
            wrk,
            [server],
            f"http://127.0.0.1:{server.port}/",
            options,
            workdir,
            ce_type=row.ce_type,
            duration_s=duration_s,
            expected_statuses=frozenset({row.expected_status}),
        )
    )
    s = m.sample()
    progress(
        f"    {_fmt(s['requests_per_s'], 0)} req/s, p50 {_fmt(s['p50_ms'], 2)} ms, "
        f"p99 {_fmt(s['p99_ms'], 2)} ms, {_fmt(s['cpu_us_per_request'], 0)} µs CPU/req"
        + (f", {m.errors} ERRORS" if m.errors else "")
    )
    return m


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(NAME, __doc__.split("\n")[0] if __doc__ else NAME)
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--postgres",
        metavar="URL",
        default=DEFAULT_POSTGRES_URL,
        help="PostgreSQL for the PostgreSQL dedupe row (default: $CASCADE_TEST_POSTGRES_URL "
        "or the server .ci/run uses); the row is skipped with a note when it is unreachable",
    )
    group.add_argument(
        "--no-postgres", action="store_true", help="leave the PostgreSQL dedupe row out"
    )
    parser.add_argument(
        "--no-ff",
        action="store_true",
        help="leave the functions-framework rows (d) and (e) out; otherwise their virtualenv "
        f"({FF_VENV.relative_to(REPO_ROOT)}) is built on first use from "
        f"{FF_REQUIREMENTS.relative_to(REPO_ROOT)}, and the rows are skipped with a note when "
        "it cannot be",
    )
    args: argparse.Namespace = parser.parse_args(argv)
    options = options_from(args, NAME)
    try:
        return _run(options, None if args.no_postgres else args.postgres, with_ff=not args.no_ff)
    except BenchError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr, flush=True)
        return 1


def ff_python(report: Callable[[str], None] = progress) -> Path | None:
    """The interpreter of the functions-framework virtualenv, or None (and a NOTE) without it."""
    try:
        return ensure_venv(FF_VENV, FF_REQUIREMENTS, report=report)
    except VenvUnavailable as exc:
        report(f"NOTE: no functions-framework rows, their virtualenv cannot be built ({exc})")
        return None


def _run(options: Options, postgres_url: str | None, *, with_ff: bool = True) -> int:
    wrk = ensure_wrk()
    started = time.monotonic()
    setup = runtime_gunicorn_setup(options.workers)
    progress(
        f"==> {NAME}: {options.runs} interleaved runs x {options.duration_s:g}s per row, "
        f"{options.connections} connections, {setup.describe()}"
    )
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cascade-bench-")))
        rows = list(BASELINE_ROWS)
        specs = baseline_servers(setup)
        python = ff_python() if with_ff else None
        if python is not None:
            rows += FF_ROWS
            specs += ff_servers(setup, python)
        rows += CASCADE_ROWS
        if postgres_url is not None:
            why_not = postgres_reachable(postgres_url)
            if why_not is None:
                rows.append(POSTGRES_ROW)
            else:
                progress(f"NOTE: no PostgreSQL row, {postgres_url} is unreachable ({why_not})")
                postgres_url = None
        specs += cascade_servers(setup, workdir / "data", postgres_url)

        sink_port = start_sink(stack, workdir)
        otel_env = exporter_env(sink_port)

        servers: dict[str, Server] = {}
        for spec in specs:
            port = free_port()
            progress(f"--> starting {spec.key} on 127.0.0.1:{port}")
            servers[spec.key] = stack.enter_context(
                Server(
                    spec.key,
                    spec.argv_for_port(port),
                    port=port,
                    log_dir=workdir,
                    env={**otel_env, **spec.env},
                )
            )
        for server in servers.values():
            server.wait_listening()
        for row in rows:
            check_answer(row, servers[row.server].port)

        traced = {s.key for s in specs if s.traced}
        if options.warmup_s > 0:
            for row in rows:
                server = servers[row.server]
                progress(f"--> warm-up {options.warmup_s:g}s: {row.key}")
                exported_before = exported_requests(sink_port)
                measure_row(wrk, server, row, options, workdir, options.warmup_s)
                if row.server in traced:
                    wait_for_export(sink_port, exported_before, row.key)

        def one(key: str, _run: int) -> Measurement:
            row = next(r for r in rows if r.key == key)
            return measure_row(wrk, servers[row.server], row, options, workdir)

        results = run_interleaved([r.key for r in rows], options.runs, one)
    return _report(options, setup, rows, results, time.monotonic() - started)


def _report(
    options: Options,
    setup: GunicornSetup,
    rows: list[Row],
    results: dict[str, list[Measurement]],
    elapsed: float,
) -> int:
    med = {key: medians([m.sample() for m in ms]) for key, ms in results.items()}
    errors = {key: sum(m.errors for m in ms) for key, ms in results.items()}
    bare = med["bare-flask"]["requests_per_s"]

    table = markdown_table(
        ["server", "req/s", "vs (a)", "p50 ms", "p99 ms", "CPU µs/req", "set aside", "errors"],
        [
            [
                r.label,
                _fmt(med[r.key]["requests_per_s"], 0),
                f"{med[r.key]['requests_per_s'] / bare:.2f}x" if bare else "-",
                _fmt(med[r.key]["p50_ms"], 2),
                _fmt(med[r.key]["p99_ms"], 2),
                _fmt(med[r.key]["cpu_us_per_request"], 0),
                str(set_aside(results[r.key])),
                str(errors[r.key]),
            ]
            for r in rows
        ],
    )
    ratios = _ratios(med)
    limits = _limits(med)
    ratio_table = markdown_table(
        ["ratio (req/s medians)", "value", "target", "verdict"],
        [
            [q.name, f"{q.value:.2f}x", f">= {q.target:g}x" if q.target else "-", q.verdict]
            for q in ratios
        ]
        + [
            [q.name, f"{q.value:.0f} {q.unit}", f"<= {q.limit:g} {q.unit}", q.verdict]
            for q in limits
        ],
    )
    print(
        f"\n## {NAME} ({utc_now()}; medians of {options.runs} interleaved runs x "
        f"{options.duration_s:g}s, {options.connections} connections, "
        f"{setup.describe()})\n\n{table}\n\n{ratio_table}\n",
        flush=True,
    )
    note = noise_note("(a) bare Flask req/s", _rps_runs(results["bare-flask"]))
    if note:
        print(note + "\n", flush=True)
    total_errors = sum(errors.values())
    header = result_header(NAME, elapsed, options, REPO_ROOT)
    payload = {
        **header,
        "settings": {
            **header["settings"],
            "gunicorn": setup.as_dict(),
            "ff_requirements": (
                str(FF_REQUIREMENTS.relative_to(REPO_ROOT)) if "ff" in results else None
            ),
            "event_bytes": DEFAULT_EVENT.wire_size(),
            "quick": options.quick,
        },
        "rows": [row_result(r.key, r.label, r.expected_status, results[r.key]) for r in rows],
        "ratios": [q.as_dict() for q in ratios],
        "limits": [q.as_dict() for q in limits],
        "errors": total_errors,
    }
    return finish(options.out, payload, elapsed, failed_requests(total_errors))


def _rps_runs(measurements: list[Measurement]) -> list[float]:
    return [m.sample()["requests_per_s"] for m in measurements]


def _ratios(med: dict[str, dict[str, float]]) -> list[Ratio]:
    def rps(key: str) -> tuple[str, float]:
        return key, med[key]["requests_per_s"]

    ratios: list[Ratio] = []
    if "cascade" in med:
        ratios += [
            Ratio.of("cascade / (a) bare-flask", rps("cascade"), rps("bare-flask"), TARGET_VS_BARE),
            Ratio.of(
                "cascade / (c) sdk-otel-flask",
                rps("cascade"),
                rps("sdk-otel-flask"),
                TARGET_VS_SDK_OTEL,
            ),
        ]
        peers = {"ff": ("(d) ff", TARGET_VS_FF), "ff-otel": ("(e) ff-otel", TARGET_VS_FF_OTEL)}
        for key, (name, target) in peers.items():
            if key in med:
                ratios.append(Ratio.of(f"cascade / {name}", rps("cascade"), rps(key), target))
    targets = {
        "cascade-reply": None,
        "cascade-idempotent": TARGET_IDEMPOTENT_VS_BARE,
        "cascade-postgres": TARGET_POSTGRES_VS_BARE,
    }
    for key, goal in targets.items():
        if key in med:
            ratios += [
                Ratio.of(f"{key} / (a) bare-flask", rps(key), rps("bare-flask"), goal),
                Ratio.of(f"{key} / (c) sdk-otel-flask", rps(key), rps("sdk-otel-flask")),
            ]
    if "cascade" in med:
        # The same comparison by server CPU per request (baseline µs / Cascade µs): less
        # sensitive to what the neighbours take from the shared cores. No target.
        def cpu(key: str) -> tuple[str, float]:
            return key, med[key]["cpu_us_per_request"]

        ratios += [
            Ratio.of("CPU: (a) µs/req / cascade µs/req", cpu("bare-flask"), cpu("cascade")),
            Ratio.of("CPU: (c) µs/req / cascade µs/req", cpu("sdk-otel-flask"), cpu("cascade")),
        ]
        ratios += [
            Ratio.of(f"CPU: ({letter}) µs/req / cascade µs/req", cpu(key), cpu("cascade"))
            for letter, key in (("d", "ff"), ("e", "ff-otel"))
            if key in med
        ]
    return ratios


def _limits(med: dict[str, dict[str, float]]) -> list[Limit]:
    if "cascade" not in med or "cascade-idempotent" not in med:
        return []
    added = med["cascade-idempotent"]["cpu_us_per_request"] - med["cascade"]["cpu_us_per_request"]
    return [Limit("CPU: cascade-idempotent - cascade", added, LIMIT_DEDUPE_CPU_US, "µs/req")]


if __name__ == "__main__":
    sys.exit(main())

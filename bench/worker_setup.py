"""Benchmark: what the slow-client worker setup costs (a pool of threads per worker vs one).

Two ``cascade serve`` of the bench function, same workers, same load, interleaved runs:
  1-thread ``--threads 1`` (gthread with one thread: one request per worker at a time)
  gthread  ``--threads N`` (gthread: a pool of N threads per worker; the runtime's default)
Both are gunicorn's gthread worker (the runtime always uses it); only the pool size differs.
Then, per setup, a one-worker server with one client trickling its request headers: does
``GET /health/readiness`` still answer (within ``--probe-timeout`` seconds)?
Reported: req/s, p50/p99, CPU per request, the ratio gthread/1-thread of the req/s medians, and
the probe's verdict. No target: the ratio is the price of answering health checks while a
client trickles (issue 10, item 7; docs/security.md).

``python -m bench.worker_setup [--quick] [--threads-per-worker N] [--probe-timeout S] ...``
"""

from __future__ import annotations

import contextlib
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from bench._cli import Options, build_parser, options_from
from bench._load import Measurement
from bench._report import (
    Ratio,
    markdown_table,
    medians,
    progress,
    result_header,
    run_interleaved,
    utc_now,
    write_json,
)
from bench._servers import REPO_ROOT, Server, cascade_argv, free_port
from bench._wrk import PING_TYPE, BenchError, ensure_wrk
from bench.function_throughput import Row, measure_row

NAME = "worker_setup"
FUNCTION = "bench/apps/cascade_function.py"


def serve_argv(port: int, workers: int, threads: int, data_dir: Path) -> list[str]:
    return cascade_argv(
        "serve",
        FUNCTION,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--data-dir",
        str(data_dir),
    )


def health_while_trickling(port: int, timeout_s: float) -> float | None:
    """Seconds a readiness check took while another connection trickles its headers, or None
    when it did not answer within ``timeout_s``."""
    stop = threading.Event()

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: bench\r\n")
            while not stop.wait(0.5):
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")  # one byte of a header that never ends

    slow = threading.Thread(target=trickle, daemon=True)
    slow.start()
    time.sleep(1.0)  # the slow client holds its worker (or thread) first
    started = time.monotonic()
    try:
        url = f"http://127.0.0.1:{port}/health/readiness"
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            answer.read()
        return time.monotonic() - started
    except OSError:
        return None
    finally:
        stop.set()
        slow.join(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(NAME, __doc__.split("\n")[0] if __doc__ else NAME)
    parser.add_argument("--threads-per-worker", type=int, default=4, metavar="N")
    parser.add_argument("--probe-timeout", type=float, default=5.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    options = options_from(args, NAME)
    threads = max(2, args.threads_per_worker)
    try:
        return _run(options, threads, args.probe_timeout)
    except BenchError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr, flush=True)
        return 1


def _run(options: Options, threads: int, probe_timeout: float) -> int:
    wrk = ensure_wrk()
    started = time.monotonic()
    setups = {"1-thread": 1, "gthread": threads}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cascade-bench-")))
        env = {"CASCADE_IDEMPOTENCY": "false", "OTEL_SDK_DISABLED": "true"}
        servers: dict[str, Server] = {}
        for key, count in setups.items():
            port = free_port()
            argv = serve_argv(port, options.workers, count, workdir / key)
            servers[key] = stack.enter_context(
                Server(key, argv, port=port, log_dir=workdir, env=env)
            )
        for server in servers.values():
            server.wait_listening()

        def one(key: str, _run: int) -> Measurement:
            row = Row(key, key, key, PING_TYPE, 204)
            return measure_row(wrk, servers[key], row, options, workdir)

        results = run_interleaved(list(setups), options.runs, one)

        probes: dict[str, float | None] = {}
        for key, count in setups.items():
            port = free_port()
            single = stack.enter_context(
                Server(
                    f"{key}-one-worker",
                    serve_argv(port, 1, count, workdir / f"{key}-one"),
                    port=port,
                    log_dir=workdir,
                    env=env,
                )
            )
            single.wait_listening()
            probes[key] = health_while_trickling(port, probe_timeout)
            single.stop()

    med = {key: medians([m.sample() for m in ms]) for key, ms in results.items()}
    ratio = Ratio.of(
        "gthread / 1-thread (req/s medians)",
        ("gthread", med["gthread"]["requests_per_s"]),
        ("1-thread", med["1-thread"]["requests_per_s"]),
    )
    cpu = Ratio.of(
        "CPU: gthread µs/req / 1-thread µs/req",
        ("gthread", med["gthread"]["cpu_us_per_request"]),
        ("1-thread", med["1-thread"]["cpu_us_per_request"]),
    )

    def verdict(key: str) -> str:
        took = probes[key]
        return (
            f"answered in {took:.2f} s" if took is not None else f"no answer in {probe_timeout:g} s"
        )

    table = markdown_table(
        [
            "setup",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            "health check, 1 worker + 1 slow client",
        ],
        [
            [
                f"{key} (--threads {setups[key]})",
                f"{med[key]['requests_per_s']:,.0f}",
                f"{med[key]['p50_ms']:.2f}",
                f"{med[key]['p99_ms']:.2f}",
                f"{med[key]['cpu_us_per_request']:,.0f}",
                verdict(key),
            ]
            for key in setups
        ],
    )
    print(
        f"\n## {NAME} ({utc_now()}; medians of {options.runs} interleaved runs x "
        f"{options.duration_s:g}s, {options.connections} connections, {options.workers} workers)"
        f"\n\n{table}\n\n{ratio.name}: {ratio.value:.2f}x; {cpu.name}: {cpu.value:.2f}x\n",
        flush=True,
    )
    elapsed = time.monotonic() - started
    header = result_header(NAME, elapsed, options, REPO_ROOT)
    write_json(
        options.out,
        {
            **header,
            "settings": {**header["settings"], "workers": options.workers, "threads": threads},
            "rows": [
                {
                    "key": key,
                    "threads": setups[key],
                    "median": med[key],
                    "runs": [m.as_dict() for m in results[key]],
                    "health_check_while_trickling_s": probes[key],
                }
                for key in setups
            ],
            "ratios": [ratio.as_dict(), cpu.as_dict()],
        },
    )
    progress(f"==> wrote {options.out} ({elapsed:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

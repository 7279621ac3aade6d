"""Where a request's time goes, in process: WSGI calls without HTTP, gunicorn or load generator.

``python -m bench.profile_function`` runs each app of the throughput benchmark in its own
process and prints CPU µs per request (medians of 3 rounds, interleaved); ``--app NAME
--profile`` prints a cProfile summary of one app instead. Spans are exported over OTLP/HTTP to
the dropping sink, as in the throughput benchmark. Numbers are for comparison between apps.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench._servers import Server, free_port
from bench._wrk import DEFAULT_EVENT, PING_TYPE, REPLY_TYPE

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

APPS = ("bare-flask", "sdk-flask", "sdk-otel-flask", "cascade", "cascade-reply", "cascade-idem")


def _load(name: str, data_dir: Path) -> WsgiApp:
    if name == "bare-flask":
        from bench.apps.bare_flask import app

        return app.wsgi_app
    if name == "sdk-flask":
        from bench.apps.sdk_flask import app

        return app.wsgi_app
    if name == "sdk-otel-flask":
        from bench.apps.sdk_otel_flask import app

        return app.wsgi_app
    # Cascade as `cascade serve` sets it up: settings from env, store prepared, multiprocess
    # metrics, tracing started (what post_fork does), then create_app.
    from cascade import Settings, create_app
    from cascade.loader import load_function
    from cascade.serve import prepare
    from cascade.telemetry.metrics import enable_multiprocess
    from cascade.telemetry.tracing import setup_tracing

    function = load_function("bench/apps/cascade_function.py", None)
    settings = Settings.from_env(data_dir=data_dir, idempotency=name == "cascade-idem")
    prepare(function, settings)
    metrics_dir = data_dir / "metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    enable_multiprocess(metrics_dir)
    setup_tracing(function.name)
    return create_app(function, settings).wsgi_app


def _environs(count: int, ce_type: str) -> list[dict[str, Any]]:
    from werkzeug.test import EnvironBuilder

    out = []
    for i in range(count):
        headers = dict(DEFAULT_EVENT.headers)
        headers["ce-id"] = f"p{os.getpid()}-{time.monotonic_ns()}-{i}"
        headers["ce-type"] = ce_type
        content_type = headers.pop("content-type")
        builder = EnvironBuilder(
            path="/", method="POST", data=DEFAULT_EVENT.body, headers=list(headers.items())
        )
        builder.content_type = content_type
        out.append(builder.get_environ())
        builder.close()
    return out


def _call_all(app: WsgiApp, environs: Sequence[dict[str, Any]]) -> None:
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    for environ in environs:
        body = app(environ, start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    bad = [s for s in statuses if not s.startswith("2")]
    if bad:
        raise SystemExit(f"unexpected answers: {bad[:3]} ({len(bad)} of {len(statuses)})")


def _one_app(name: str, count: int, profile: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="cascade-profile-") as tmp:
        app = _load(name, Path(tmp))
        ce_type = REPLY_TYPE if name == "cascade-reply" else PING_TYPE
        _call_all(app, _environs(200, ce_type))  # warm caches, lazy imports
        environs = _environs(count, ce_type)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            _call_all(app, environs)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(30)
            print(out.getvalue())
            return
        started = time.process_time()
        _call_all(app, environs)
        used = time.process_time() - started
        print(f"{used * 1e6 / count:.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_function")
    parser.add_argument("--app", choices=APPS, help="one app in this process")
    parser.add_argument("--profile", action="store_true", help="cProfile summary of --app")
    parser.add_argument("-n", "--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.app:
        _one_app(args.app, args.requests, args.profile)
        return 0

    with tempfile.TemporaryDirectory(prefix="cascade-profile-") as tmp:
        port = free_port()
        argv_sink = [sys.executable, "-m", "bench.apps.otlp_sink", "--port", str(port)]
        with Server("otlp-sink", argv_sink, port=port, log_dir=Path(tmp)) as sink:
            sink.wait_listening()
            env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
            timings: dict[str, list[float]] = {name: [] for name in APPS}
            for _ in range(args.rounds):
                for name in APPS:
                    out = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "bench.profile_function",
                            "--app",
                            name,
                            "-n",
                            str(args.requests),
                        ],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                        timeout=600,
                    )
                    timings[name].append(float(out.stdout.split()[-1]))
    bare = statistics.median(timings["bare-flask"])
    print("| app | CPU µs/request (in process) | vs bare Flask |")
    print("|---|---:|---:|")
    for name, values in timings.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.0f} | +{med - bare:.0f} µs |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

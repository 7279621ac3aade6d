"""The dropping OTLP sink the benchmarks export spans to (``bench/apps/otlp_sink.py``).

Cascade rows export their spans for real, so tracing costs what it costs in production; the
sink counts the export requests so a warm-up can wait until the exporter has run once.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.request
from pathlib import Path

from bench._servers import Server, free_port
from bench._wrk import BenchError


def start_sink(stack: contextlib.ExitStack[bool | None], log_dir: Path) -> int:
    """Start a sink that lives as long as ``stack``; returns its port once it listens."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.apps.otlp_sink", "--port", str(port)]
    sink = stack.enter_context(Server("otlp-sink", argv, port=port, log_dir=log_dir))
    sink.wait_listening()
    return port


def exporter_env(port: int) -> dict[str, str]:
    """The environment that points a function's OTLP exporter at the sink."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }


def exported_requests(port: int) -> int:
    """How many export requests the sink has received so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
        stats: dict[str, int] = json.load(resp)
    return stats["requests"]


def wait_for_export(port: int, before: int, what: str, timeout_s: float = 12.0) -> None:
    # BatchSpanProcessor exports every 5 s or per 512 spans: a warm-up must have produced some.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if exported_requests(port) > before:
            return
        time.sleep(0.25)
    raise BenchError(f"{what}: no span export reached the OTLP sink within {timeout_s:.0f}s")

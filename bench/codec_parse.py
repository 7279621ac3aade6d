"""In-process cost of parsing and writing a CloudEvent: the codec against a git revision's.

``python -m bench.codec_parse --before REV`` loads the two CloudEvents modules REV had (the
runtime's ``cascade/binding.py`` and the broker's HTTP event module) from git, and times the
same operations with them and with today's ``cascade.codec``, interleaved over several rounds.
It prints µs per operation (medians) and the ratio today / REV: below 1.0x is faster.

Operations (the bench's 313-byte binary event, ``bench/_wrk.py``):
- ``runtime parse``: a gunicorn-like WSGI environ → a message (every function request);
- ``broker parse``: aiohttp request headers → validated attributes (every ingress request);
- ``encode``: attributes → binary headers (every delivery, reply and publish);
- ``structured parse``: an ``application/cloudevents+json`` body → attributes and data.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import orjson
from multidict import CIMultiDict

from bench._report import markdown_table
from cascade import codec

ROOT = Path(__file__).resolve().parents[1]
OLD_PATHS = {
    "runtime": ("src/cascade/binding.py",),
    "broker": ("src/cascade/broker/http/event.py", "src/cascade/broker/http_event.py"),
}

HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "r0123456-1-000001",
    "ce-source": "/bench/load-generator",
    "ce-type": "dev.cascade.bench.ping",
    "ce-time": "2026-01-01T00:00:00Z",
    "ce-benchsentus": "1767225600000000",
    "ce-traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "ce-partitionkey": "order-42",
    "Content-Type": "application/json",
}
BODY = b'{"message":"ping","padding":"' + b"x" * 200 + b'"}'
ATTRIBUTES = {k[3:]: v for k, v in HEADERS.items() if k.startswith("ce-")} | {
    "datacontenttype": "application/json"
}
STRUCTURED = orjson.dumps({**ATTRIBUTES, "data": orjson.loads(BODY)})


def wsgi_environ() -> dict[str, object]:
    environ: dict[str, object] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8080",
        "HTTP_USER_AGENT": "wrk",
        "HTTP_CONNECTION": "keep-alive",
        "CONTENT_LENGTH": str(len(BODY)),
        "CONTENT_TYPE": HEADERS["Content-Type"],
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
    }
    for name, value in HEADERS.items():
        if name.startswith("ce-"):
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def load_old(revision: str, role: str, into: Path) -> ModuleType:
    """``role``'s module as it was at ``revision``, imported under a private name."""
    for path in OLD_PATHS[role]:
        shown = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
            capture_output=True,
            text=True,
        )
        if shown.returncode == 0:
            file = into / f"old_{role}.py"
            file.write_text(shown.stdout)
            spec = importlib.util.spec_from_file_location(f"_codec_bench_old_{role}", file)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return module
    raise SystemExit(f"{revision} has none of {', '.join(OLD_PATHS[role])}")


def cases(
    old_runtime: ModuleType, old_broker: ModuleType
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name → (before, after); each pair does the same work."""
    environ = wsgi_environ()
    request_headers = CIMultiDict(HEADERS)
    structured_headers = {"Content-Type": "application/cloudevents+json"}
    return {
        "runtime parse": (
            lambda: old_runtime.parse_wsgi(environ, BODY),
            lambda: codec.parse_wsgi(environ, BODY),
        ),
        "broker parse": (
            lambda: old_broker.binary_attributes(request_headers),
            lambda: codec.binary_attributes(request_headers.items()),
        ),
        "runtime encode": (
            lambda: old_runtime.binary_headers(ATTRIBUTES),
            lambda: codec.binary_headers(ATTRIBUTES),
        ),
        "broker encode": (
            lambda: old_broker.binary_headers(ATTRIBUTES),
            lambda: codec.binary_headers(ATTRIBUTES),
        ),
        "runtime structured parse": (
            lambda: old_runtime.parse_headers(structured_headers.items(), STRUCTURED),
            lambda: codec.structured_message(STRUCTURED),
        ),
        "broker structured parse": (
            lambda: old_broker.event_from_http(structured_headers, STRUCTURED),
            lambda: codec.structured_message(STRUCTURED),
        ),
    }


def per_op_us(function: Callable[[], object], number: int) -> float:
    # CPU time of this process: the machine is shared, wall time would count the neighbours.
    return timeit.timeit(function, number=number, timer=time.process_time) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000, help="operations per sample")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        old_runtime = load_old(args.before, "runtime", Path(tmp))
        old_broker = load_old(args.before, "broker", Path(tmp))
    pairs = cases(old_runtime, old_broker)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pairs}
    for _ in range(args.rounds):
        for name, (before, after) in pairs.items():
            before(), after()  # fail early, and warm caches
            samples[name].append((per_op_us(before, args.number), per_op_us(after, args.number)))
    rows = []
    for name, values in samples.items():
        before_us = statistics.median(v[0] for v in values)
        after_us = statistics.median(v[1] for v in values)
        rows.append([name, f"{before_us:.2f}", f"{after_us:.2f}", f"{after_us / before_us:.2f}x"])
    print(f"median of {args.rounds} rounds of {args.number} operations; before = {args.before}")
    print(markdown_table(["operation", "before µs", "codec µs", "codec / before"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

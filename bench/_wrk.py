"""wrk, the load generator: install it if missing, feed it a CloudEvent, parse its JSON line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_EVENT",
    "PING_TYPE",
    "REPLY_TYPE",
    "BenchError",
    "BenchEvent",
    "WrkResult",
    "ensure_wrk",
    "lua_string",
    "parse_wrk_output",
    "render_script",
    "run_wrk",
]

_LUA_BODY = Path(__file__).with_name("wrk_cloudevent.lua")
_MARKER = "WRK_JSON "

# Event types the bench apps understand: one handled with 204, one answered with a reply.
PING_TYPE = "com.example.bench.ping"
REPLY_TYPE = "com.example.bench.echo"


class BenchError(RuntimeError):
    """A benchmark could not run or produced unusable results (exit status 1)."""


@dataclass(frozen=True)
class BenchEvent:
    """The binary CloudEvent every request carries; wrk sets a fresh ``ce-id`` per request."""

    headers: Mapping[str, str]
    body: bytes

    def wire_size(self) -> int:
        """Bytes of the event on the wire: its headers (name, colon, value, CRLF) plus body."""
        header_bytes = sum(len(f"{k}: {v}\r\n".encode()) for k, v in self.headers.items())
        return header_bytes + len(self.body)


DEFAULT_EVENT = BenchEvent(
    headers={
        "ce-specversion": "1.0",
        # Replaced per request by the script; the placeholder keeps wire_size() honest.
        "ce-id": "r0123456-1-000001",
        "ce-source": "/bench/load-generator",
        "ce-type": PING_TYPE,
        "ce-time": "2026-01-01T00:00:00Z",
        "ce-benchsentus": "1767225600000000",
        "content-type": "application/json",
    },
    body=(
        b'{"order_id": "ord-000042", "customer": "cust-7", "sku": "SKU-12345",'
        b' "quantity": 3, "note": "bench payload"}'
    ),
)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, as its ``done`` hook reported it."""

    duration_s: float
    requests: int  # answered requests
    sent: int  # requests written (answered + in flight when wrk stopped)
    statuses: Mapping[int, int]
    errors: Mapping[str, int]
    latency_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def ok(self) -> int:
        """Answers with a 2xx status."""
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def socket_errors(self) -> int:
        """Connect, read, write errors and timeouts (wrk's ``status`` count is non_2xx)."""
        return sum(n for kind, n in self.errors.items() if kind != "status")


def lua_string(text: str) -> str:
    """A Lua string literal for ``text`` (quotes, backslashes and control bytes escaped)."""
    out = ['"']
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    out.append('"')
    return "".join(out)


def render_script(event: BenchEvent, run_id: str, pace_ms: int = 0) -> str:
    """The full wrk Lua script: globals describing the event, then the fixed script body.

    ``pace_ms > 0`` makes each connection wait that long before each request (wrk's ``delay``
    hook), for a light, roughly fixed offered load instead of a saturating one.
    """
    lines = ["EVENT_HEADERS = {"]
    lines += [f"  [{lua_string(k)}] = {lua_string(v)}," for k, v in event.headers.items()]
    lines.append("}")
    lines.append(f"EVENT_BODY = {lua_string(event.body.decode())}")
    lines.append(f"RUN_ID = {lua_string(run_id)}")
    if pace_ms > 0:
        # wrk looks for `delay` when it loads the script, so it must be defined up front.
        lines.append(f"function delay() return {int(pace_ms)} end")
    return "\n".join(lines) + "\n" + _LUA_BODY.read_text()


def parse_wrk_output(stdout: str) -> WrkResult:
    """Read the ``WRK_JSON`` line that the script's ``done`` hook prints."""
    for line in stdout.splitlines():
        if line.startswith(_MARKER):
            raw = json.loads(line[len(_MARKER) :])
            break
    else:
        raise BenchError(f"wrk printed no {_MARKER.strip()} line; output was:\n{stdout[-2000:]}")
    latency = {k: float(v) / 1000.0 for k, v in raw["latency_us"].items()}
    return WrkResult(
        duration_s=raw["duration_us"] / 1e6,
        requests=int(raw["requests"]),
        sent=int(raw["sent"]),
        statuses={int(k): int(v) for k, v in raw["statuses"].items()},
        errors={k: int(v) for k, v in raw["errors"].items()},
        latency_ms=latency,
    )


def ensure_wrk() -> str:
    """Path of the wrk binary; installs the Debian package when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError(
            "wrk (the load generator) is not installed and this is not root, so it cannot be "
            "installed here: run `sudo apt-get install -y --no-install-recommends wrk` first"
        )
    print("==> wrk missing: installing the Debian package (apt-get install wrk)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(install, env=env, check=False)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("installing wrk with apt-get failed; see the apt output above")
    return found


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    duration_s: float,
    connections: int,
    threads: int,
    ce_type: str = "",
    timeout_s: float = 10.0,
) -> WrkResult:
    """Run wrk once against ``url`` and return what its script reported."""
    threads = max(1, min(threads, connections))
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(script),
        url,
        "--",
        ce_type,
    ]
    proc = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=duration_s + timeout_s + 60
    )
    if proc.returncode != 0:
        raise BenchError(f"wrk exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}")
    return parse_wrk_output(proc.stdout)

"""Start `cascade serve` as a real process on a free 127.0.0.1 port, and talk to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from tests.http_call import Answer, call

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "unit" / "runtime" / "probe_function.py"
CASCADE = Path(sys.executable).with_name("cascade")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Answer:
        return call(method, f"http://127.0.0.1:{self.port}{path}", body, headers, timeout)

    def send(self, data: Mapping[str, object], event_id: str | None = None, **kw: float) -> Answer:
        headers = {
            "ce-specversion": "1.0",
            "ce-id": event_id or str(uuid.uuid4()),
            "ce-source": "/integration",
            "ce-type": "com.example.probe.command",
            "Content-Type": "application/json",
        }
        return self.request("POST", "/", orjson.dumps(data), headers, **kw)

    def metric(self, line_prefix: str) -> float:
        text = self.request("GET", "/metrics").body.decode()
        lines = [line for line in text.splitlines() if line.startswith(line_prefix)]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve(
    workdir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    target: Path = PROBE,
    startup_timeout: float = 60.0,
) -> Iterator[Server]:
    """Run `cascade serve target` in ``workdir``; stopped with SIGTERM (then SIGKILL)."""
    port = free_port()
    log = workdir / "serve.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS"))}
    environment.update(env or {})
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(CASCADE), "serve", str(target), "--port", str(port), *args],
            cwd=workdir,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so workers can be reaped too
        )
    server = Server(process, port, log)
    try:
        wait_ready(server, startup_timeout)
        yield server
    finally:
        stop(server)


def wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"cascade serve exited early:\n{server.output()}")
        try:
            if server.request("GET", "/health/readiness", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"cascade serve not ready after {timeout}s:\n{server.output()}")


def stop(server: Server, timeout: float = 60.0) -> int:
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group we created: master + workers
            process.wait(timeout=10)
    return process.returncode


def send_at_once(
    server: Server, data: Mapping[str, object], event_id: str, copies: int = 4
) -> list[Answer]:
    """``copies`` threads send the same event at the same moment (a redelivery race).

    The answers come back in the order they arrived; a thread still waiting after 90 s adds
    none, so callers assert on the count.
    """
    results: list[Answer] = []
    lock = threading.Lock()
    barrier = threading.Barrier(copies)

    def deliver() -> None:
        barrier.wait(timeout=30)
        answer = server.send(data, event_id=event_id, timeout=60)
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=deliver) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    return results

"""Start and stop the servers under test: free loopback ports, readiness probes, stop by PID."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from bench._memory import child_pids
from bench._wrk import BenchError, BenchEvent

__all__ = [
    "REPO_ROOT",
    "GunicornSetup",
    "Server",
    "cascade_argv",
    "free_port",
    "gunicorn_argv",
    "post_event",
    "process_tree_cpu_s",
    "runtime_gunicorn_setup",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
# Ports of services our machines run; never bind them even if they look free.
_RESERVED_PORTS = frozenset({3306, 4222, 5432, 5672, 6379, 1883})
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _RESERVED_PORTS:
            return port


@dataclass(frozen=True)
class GunicornSetup:
    """Worker class, processes and threads: what every server under test shares."""

    worker_class: str
    workers: int
    threads: int

    def describe(self) -> str:
        return f"gunicorn {self.worker_class} {self.workers}x{self.threads}"

    def as_dict(self) -> dict[str, Any]:
        return {"worker_class": self.worker_class, "workers": self.workers, "threads": self.threads}


def runtime_gunicorn_setup(workers: int) -> GunicornSetup:
    """The Cascade runtime's gunicorn preset (``cascade serve``'s defaults) with ``workers``.

    Read from the preset itself, so the baselines follow it when it changes. Every row runs
    with it: a row on another worker class measures the worker, not the framework (``sync``
    closes each connection after its answer, ``gthread`` keeps it alive).
    """
    from cascade.function import Function
    from cascade.gunicorn import gunicorn_options
    from cascade.settings import Settings

    options = gunicorn_options(Function("bench-setup"), Settings(workers=workers))
    return GunicornSetup(
        str(options["worker_class"]), int(options["workers"]), int(options["threads"])
    )


def gunicorn_argv(
    app: str,
    port: int,
    *,
    setup: GunicornSetup,
    python: str | Path = sys.executable,
    extra: Sequence[str] = (),
) -> list[str]:
    """The one gunicorn command line every Flask/WSGI server under test shares.

    ``setup``'s worker class, workers and threads (the runtime's, see
    :func:`runtime_gunicorn_setup`); ``python`` is the interpreter of the environment that
    holds the app (a peer's own virtualenv). No control socket (gunicorn 27 would otherwise
    share and delete ~/.gunicorn/gunicorn.ctl), no access log.
    """
    return [
        str(python),
        "-m",
        "gunicorn",
        "--workers",
        str(setup.workers),
        "--worker-class",
        setup.worker_class,
        "--threads",
        str(setup.threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        "--log-level",
        "warning",
        # Heartbeat files in memory, as the Cascade preset does.
        *(["--worker-tmp-dir", "/dev/shm"] if Path("/dev/shm").is_dir() else []),
        *extra,
        app,
    ]


def cascade_argv(*args: str) -> list[str]:
    """The ``cascade`` command of this interpreter's environment, with ``args``."""
    script = Path(sys.executable).with_name("cascade")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from cascade.cli import main; main()", *args]


def post_event(
    port: int,
    path: str,
    event: BenchEvent,
    *,
    ce_id: str,
    ce_type: str | None = None,
    timeout_s: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    """POST the bench event once (stdlib client); returns status, lowercased headers, body."""
    headers = dict(event.headers)
    headers["ce-id"] = ce_id
    headers["ce-benchsentus"] = str(time.time_ns() // 1000)
    if ce_type:
        headers["ce-type"] = ce_type
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("POST", path, body=event.body, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its live descendants."""
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            continue  # exited between listing and reading
        # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        todo += child_pids(current)
    return total


class Server:
    """One server process (and its workers), started in its own session, stopped by PID."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_dir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BenchError(f"{self.name} is not running")
        return self._proc.pid

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stoppable as a whole
            )

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def wait_listening(self, timeout_s: float = 30.0) -> None:
        """Wait until the port accepts connections; fail early if the process dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self._proc.returncode} while starting; "
                    f"its log ({self.log_path}):\n{self.log_tail()}"
                )
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise BenchError(
            f"{self.name} did not listen on 127.0.0.1:{self.port} within {timeout_s:.0f}s; "
            f"its log:\n{self.log_tail()}"
        )

    def cpu_s(self) -> float:
        return process_tree_cpu_s(self.pid)

    def worker_cpu_s(self) -> dict[int, float]:
        """CPU seconds so far of each child process (a gunicorn master's are its workers)."""
        return {pid: process_tree_cpu_s(pid) for pid in child_pids(self.pid)}

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to our PID (gunicorn stops its workers); SIGKILL our group if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group we created with the session
            proc.wait(timeout=timeout_s)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

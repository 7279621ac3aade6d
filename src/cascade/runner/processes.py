"""The child processes of ``cascade run``: started, watched and stopped by PID.

Each child (the broker, one ``cascade serve`` per function) gets its own process group, so a
Ctrl-C in the terminal reaches ``cascade run`` alone and it can stop the children in order
(the broker drains first, then the functions). On Linux each child also gets SIGTERM when
``cascade run`` dies without stopping it (``PR_SET_PDEATHSIG``), so a killed runner leaves no
servers behind. Output goes to ``<data-dir>/logs/<name>.log`` (appended, one header per run);
the tail of it is shown when a child fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

__all__ = ["Child", "cascade_command", "spawn", "stop_all"]

_PR_SET_PDEATHSIG: Final = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def cascade_command() -> list[str]:
    """How to run the ``cascade`` command of this installation."""
    script = Path(sys.executable).with_name("cascade")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from cascade.cli import main; main()"]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    log_start: int  # where this run's output begins in the (appended) log file

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        """SIGTERM to the child itself (gunicorn's master stops its workers gracefully)."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)

    def kill_group(self, *, wait: bool = True) -> None:
        """SIGKILL to the child's whole process group (its workers included)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if wait and self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def output_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines this run's child wrote."""
        try:
            with self.log.open("rb") as handle:
                handle.seek(self.log_start)
                text = handle.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log}: {exc})"
        kept = text.rstrip("\n").splitlines()[-lines:]
        return "\n".join(kept) if kept else "(no output)"


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
) -> Child:
    """Start ``argv`` in its own process group, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with log.open("ab") as sink:
        sink.write(f"==== cascade run: {name} started {stamp}: {' '.join(argv)}\n".encode())
        sink.flush()
        start = sink.tell()
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),  # children are spawned before any thread starts
        )
    return Child(name, process, log, start)


def _die_with(parent: int) -> Callable[[], None] | None:
    libc = _LIBC
    if libc is None:
        return None

    def in_child() -> None:
        # Runs between fork and exec: only async-signal-safe work, libc already loaded.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(1)

    return in_child


def stop_all(children: Sequence[Child], timeout: float) -> None:
    """SIGTERM each child, wait up to ``timeout`` seconds in all, then SIGKILL the rest."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        child.wait(deadline - time.monotonic())
    for child in children:
        child.kill_group()

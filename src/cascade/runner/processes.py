"""The child processes of ``cascade run``: started, watched and stopped by PID.

Each child (the broker, one ``cascade serve`` per function) gets its own process group, so a
Ctrl-C in the terminal reaches ``cascade run`` alone and it can stop the children in order
(the broker drains first, then the functions). On Linux each child also gets SIGTERM when
``cascade run`` dies without stopping it (``PR_SET_PDEATHSIG``), so a killed runner leaves no
servers behind. The signal is asked for by a few lines of Python run in the new process just
before it execs the command, not by a ``preexec_fn``: the supervisor restarts children while
the runner's threads run, and code between fork and exec is not safe then.
Output goes to ``<data-dir>/logs/<name>.log`` (appended, one header per start);
the tail of it is shown when a child fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

__all__ = ["Child", "cascade_command", "spawn", "stop_all"]

_PR_SET_PDEATHSIG: Final = 1


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
            [*_die_with_parent(), *argv],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, process, log, start)


# Run by the new process itself, then replaced by the command (exec keeps the death signal).
_DEATH_SIGNAL_THEN_EXEC: Final = (
    "import ctypes, os, signal, sys\n"
    f"ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"  # the runner died before prctl took effect
    "    sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _die_with_parent() -> list[str]:
    """The argv prefix that makes the command get SIGTERM when this process dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return []
    return [sys.executable, "-c", _DEATH_SIGNAL_THEN_EXEC, str(os.getpid())]


def stop_all(children: Sequence[Child], timeout: float) -> None:
    """SIGTERM each child, wait up to ``timeout`` seconds in all, then SIGKILL the rest."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        child.wait(deadline - time.monotonic())
    for child in children:
        child.kill_group()

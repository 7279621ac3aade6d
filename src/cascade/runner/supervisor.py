"""Keep every process of ``cascade run`` running, the way a kubelet keeps a pod's container.

A process that exits while the run goes on (a crash, ``kill -9`` of a gunicorn master, an
out-of-memory kill) has its process group killed (orphaned workers free its port) and is
started again with the same command, port and environment after a back-off delay, as
Kubernetes' CrashLoopBackOff does: the delay starts at ``initial_delay`` and doubles per exit
up to ``max_delay``, and goes back to the start once the process has run ``reset_after``
seconds. Kubernetes uses 10 s, 5 min and 10 min; the local defaults are smaller (1 s, 30 s,
60 s) because a laptop's processes start in seconds and nobody waits minutes for a demo.

Only a process that was running can be restarted: one that fails on the first start stops
the run (``Runner._wait_ready``), since restarting a broken import helps nobody.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cascade.runner.processes import Child, spawn

__all__ = ["RestartPolicy", "Supervised", "describe_exit"]

DEFAULT_INITIAL_DELAY: Final = 1.0
DEFAULT_MAX_DELAY: Final = 30.0
DEFAULT_RESET_AFTER: Final = 60.0


@dataclass(frozen=True)
class RestartPolicy:
    initial_delay: float = DEFAULT_INITIAL_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    reset_after: float = DEFAULT_RESET_AFTER

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError(
                f"restart delays must satisfy 0 <= initial ({self.initial_delay:g} s) "
                f"<= max ({self.max_delay:g} s)"
            )

    def delay(self, exits_in_a_row: int) -> float:
        """The wait before restart number ``exits_in_a_row`` (1 for the first exit)."""
        return float(min(self.initial_delay * 2 ** max(0, exits_in_a_row - 1), self.max_delay))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class Supervised:
    """One process of the run: how it is started, its current Child and its restarts."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log: Path
    health_url: str
    child: Child | None = None
    restarts: int = 0  # restarts during this run, shown and written to run.json
    exits_in_a_row: int = 0  # exits since the process last ran reset_after seconds
    started_at: float = 0.0  # time.monotonic() of the current start
    restart_at: float | None = None  # when the exited process is started again
    ready: bool = False  # answered its health check since the current start
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def start(self) -> Child:
        self.child = spawn(self.name, self.argv, env=self.env, cwd=self.cwd, log=self.log)
        self.started_at = self.clock()
        self.ready = False
        return self.child

    def exited(self, policy: RestartPolicy) -> float:
        """The current process is gone: kill what is left of its group (workers of a killed
        gunicorn master hold its port) and schedule the restart; returns the delay."""
        assert self.child is not None
        self.child.kill_group(wait=False)
        now = self.clock()
        if now - self.started_at >= policy.reset_after:
            self.exits_in_a_row = 0
        self.exits_in_a_row += 1
        delay = policy.delay(self.exits_in_a_row)
        self.restart_at = now + delay
        return delay

    def due(self) -> bool:
        return self.restart_at is not None and self.clock() >= self.restart_at

    def restart(self) -> Child:
        self.restart_at = None
        self.restarts += 1
        return self.start()

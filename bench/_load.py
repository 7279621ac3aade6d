"""One measured wrk run against a server: throughput, latency, errors and server CPU."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench._cli import Options
from bench._report import progress
from bench._servers import Server
from bench._wrk import DEFAULT_EVENT, BenchEvent, WrkResult, render_script, run_wrk

__all__ = ["Measurement", "fresh_run_id", "measure", "measure_all_workers", "write_script"]

# A run counts as served by one worker when it took this share of the workers' CPU.
ONE_WORKER_SHARE = 0.95
# Attempts of one run at most, the last kept whatever it shows.
ONE_WORKER_TRIES = 4


def fresh_run_id() -> str:
    """A short id with no ``-`` (the subscriber splits ``ce-id`` on it to find the run)."""
    return "r" + secrets.token_hex(4)


def write_script(
    directory: Path, run_id: str, event: BenchEvent = DEFAULT_EVENT, pace_ms: int = 0
) -> Path:
    path = directory / f"wrk-{run_id}.lua"
    path.write_text(render_script(event, run_id, pace_ms))
    return path


@dataclass(frozen=True)
class Measurement:
    """One wrk run plus the CPU the server's process tree spent during it."""

    run_id: str
    wrk: WrkResult
    server_cpu_s: float
    expected_statuses: frozenset[int] = field(default_factory=lambda: frozenset({202}))
    extra: Mapping[str, float] = field(default_factory=dict)
    cpu_by_server: Mapping[str, float] = field(default_factory=dict)  # seconds, by Server.name
    # CPU seconds of each worker during the run, by Server.name (servers with workers only).
    cpu_by_worker: Mapping[str, Sequence[float]] = field(default_factory=dict)
    # Earlier attempts of this run that one worker served alone (see ``one_worker_served``).
    redone: Sequence[Mapping[str, Any]] = ()

    def one_worker_served(self) -> str | None:
        """The server whose workers sat idle but one during the run, if any.

        gunicorn's workers share one listening socket and a keep-alive connection stays with
        the worker that accepted it; when wrk opens its connections while the other workers
        are off the CPU, one worker takes them all and the run measures one process, not the
        setup (req/s about halves with 2 workers). Every row is exposed to it alike.
        """
        for name, cpu in self.cpu_by_worker.items():
            total = sum(cpu)
            if len(cpu) >= 2 and total > 0 and max(cpu) >= ONE_WORKER_SHARE * total:
                return name
        return None

    @property
    def unexpected(self) -> int:
        """Answers whose status is not one the target should give."""
        return sum(n for s, n in self.wrk.statuses.items() if s not in self.expected_statuses)

    @property
    def errors(self) -> int:
        return self.unexpected + self.wrk.socket_errors

    def sample(self) -> dict[str, float]:
        """The numbers that get a median across runs."""
        requests = self.wrk.requests

        def per_request(cpu_s: float) -> float:
            return cpu_s * 1e6 / requests if requests else 0.0

        return {
            "requests_per_s": self.wrk.requests_per_s,
            "p50_ms": self.wrk.latency_ms.get("p50", 0.0),
            "p99_ms": self.wrk.latency_ms.get("p99", 0.0),
            "cpu_us_per_request": per_request(self.server_cpu_s),
            **{f"cpu_us_per_request.{k}": per_request(v) for k, v in self.cpu_by_server.items()},
            **self.extra,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            **self.sample(),
            "requests": self.wrk.requests,
            "sent": self.wrk.sent,
            "statuses": {str(k): v for k, v in sorted(self.wrk.statuses.items())},
            "socket_errors": dict(self.wrk.errors),
            "unexpected_statuses": self.unexpected,
            "cpu_s_by_worker": {k: [round(c, 3) for c in v] for k, v in self.cpu_by_worker.items()},
            "redone_one_worker_runs": list(self.redone),
        }


def measure(
    wrk: str,
    servers: Sequence[Server],
    url: str,
    options: Options,
    workdir: Path,
    *,
    ce_type: str = "",
    duration_s: float | None = None,
    connections: int | None = None,
    pace_ms: int = 0,
    expected_statuses: frozenset[int] = frozenset({202}),
    settle: Callable[[WrkResult, str], Mapping[str, float]] | None = None,
) -> Measurement:
    """Load ``url`` for one run; CPU is summed over every server in ``servers``.

    ``settle(result, run_id)``, when given, runs after wrk and before the last CPU reading
    (e.g. waiting for a broker to deliver everything); its numbers join the sample.
    """
    run_id = fresh_run_id()
    script = write_script(workdir, run_id, pace_ms=pace_ms)
    cpu_before = {s.name: s.cpu_s() for s in servers}
    workers_before = {s.name: s.worker_cpu_s() for s in servers}
    result = run_wrk(
        wrk,
        url,
        script,
        duration_s=duration_s if duration_s is not None else options.duration_s,
        connections=connections if connections is not None else options.connections,
        threads=options.threads,
        ce_type=ce_type,
    )
    extra = settle(result, run_id) if settle is not None else {}
    cpu = {s.name: s.cpu_s() - cpu_before[s.name] for s in servers}
    by_worker: dict[str, list[float]] = {}
    for s in servers:
        before = workers_before[s.name]
        after = s.worker_cpu_s()
        if len(before) >= 2:
            by_worker[s.name] = [after.get(pid, cpu_s) - cpu_s for pid, cpu_s in before.items()]
    script.unlink(missing_ok=True)
    return Measurement(run_id, result, sum(cpu.values()), expected_statuses, extra, cpu, by_worker)


def measure_all_workers(
    attempt: Callable[[], Measurement], tries: int = ONE_WORKER_TRIES
) -> Measurement:
    """``attempt()`` again (at most ``tries`` times in all) while one worker served it alone.

    The attempts set aside are kept in the measurement (``redone``) and in the JSON, and each
    is announced, so the figures say how often it happened.
    """
    redone: list[dict[str, Any]] = []
    while True:
        m = attempt()
        server = m.one_worker_served()
        if server is None or len(redone) + 1 >= tries:
            return replace(m, redone=tuple(redone)) if redone else m
        s = m.sample()
        progress(
            f"    one worker of {server} served the whole run "
            f"({s['requests_per_s']:,.0f} req/s): set aside, run again"
        )
        redone.append({"server": server, **m.as_dict()})

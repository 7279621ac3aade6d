"""Lifecycle hooks under gunicorn: each worker runs the start hooks after the fork and the
stop hooks after the SIGTERM drain; the master runs neither."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.e2e.harness import wait_until
from tests.integration.server import ROOT, serve

FUNCTION = ROOT / "tests" / "unit" / "runtime" / "lifecycle_function.py"


def pids(log: Path, ending: str) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines() if line.endswith(ending)]


def test_each_worker_starts_after_fork_and_stops_after_the_drain(tmp_path: Path) -> None:
    log = tmp_path / "lifecycle.log"
    env = {"LIFECYCLE_LOG": str(log), "PYTHONPATH": str(ROOT)}
    with serve(tmp_path, "--workers", "2", env=env, target=FUNCTION) as server:
        wait_until(lambda: log.exists() and len(pids(log, "start second")) == 2, 30, "2 starts")
        started = pids(log, "start lifecycle")
        assert len(set(started)) == 2  # one per worker
        assert str(server.process.pid) not in started  # never the master
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0
    assert sorted(pids(log, "stop")) == sorted(started)

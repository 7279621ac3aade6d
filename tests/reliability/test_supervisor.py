"""`cascade run` supervises like a cluster: a process killed with SIGKILL while orders stream in
(a gunicorn master alone, leaving its workers orphaned; the broker) is started again after its
back-off delay, the restart is shown and counted, and every order still completes once, with
nothing lost: the broker retries the deliveries that failed meanwhile (with the Triggers'
backoff from 0.5 s, 15 s in all); what outlasted the retries is in the dead-letter queue as a
transport error (no HTTP answer), and one `cascade dlq replay --all` finishes it, as an
operator would."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.harness import (
    ShopRun,
    broker_lag,
    fast_manifests,
    get_json,
    run_cli,
    wait_until,
)
from tests.reliability.orders import Placer, settle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ORDERS = 90
KILLS = (("payment", 20), ("broker", 45), ("order", 70))  # (process, after so many orders)


def pid_of(run: ShopRun, name: str) -> int:
    state = run.state()
    assert state is not None
    return int(state["broker"]["pid"] if name == "broker" else state["functions"][name]["pid"])


def restarts_of(run: ShopRun, name: str) -> int:
    state = run.state() or {}
    described = state.get("broker") if name == "broker" else state.get("functions", {}).get(name)
    return int((described or {}).get("restarts", 0))


def test_killed_processes_are_restarted_and_no_order_is_lost(tmp_path: Path) -> None:
    run = ShopRun.in_dir(tmp_path)
    run.manifests = fast_manifests(tmp_path, backoff_delay="PT0.5S")
    run.args = ("--restart-delay", "0.2", "--restart-max-delay", "2")
    try:
        run.start()
        placer = Placer(run, ORDERS, marks=tuple(after for _, after in KILLS))
        placer.start()
        for name, after in KILLS:
            assert placer.reached(after, 180), f"orders are not being placed: {placer.failure}"
            pid = pid_of(run, name)
            os.kill(pid, signal.SIGKILL)  # the process alone: the supervisor ends its group
            run.child_pids.append(pid)
            wait_until(lambda n=name: restarts_of(run, n) == 1, 60, f"{name} to be restarted")
            new_pid = pid_of(run, name)
            assert new_pid != pid
            run.child_pids.append(new_pid)
            assert f"restart: {name} killed by SIGKILL" in run.output()
            assert run.process is not None
            assert run.process.poll() is None, run.output()
        placer.join(240)
        wait_until(lambda: broker_lag(run.broker) == 0, 120, "the broker to catch up")
        dead = get_json(f"{run.url('dead-letter')}/dead-letters?limit=500")["dead_letters"]
        for letter in dead:  # only what a restart window cost: the subscriber was not there
            assert letter["error_code"] is None, letter  # a transport error, no HTTP answer
        if dead:
            replay = run_cli("dlq", "--data-dir", str(run.data_dir), "replay", "--all")
            assert replay.returncode == 0, replay.stdout + replay.stderr
        settle(run, placer, ORDERS, crash=False)
        for name, _ in KILLS:
            assert f"restart: {name} started again" in run.output()
            assert restarts_of(run, name) == 1
        assert run.stop(signal.SIGTERM) == 0, run.output()
        assert "restarts during this run: broker 1, order 1, payment 1" in run.output()
    finally:
        run.kill_all()

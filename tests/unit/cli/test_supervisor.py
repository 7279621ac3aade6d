"""The restart back-off of `cascade run` (CrashLoopBackOff-like), on a fake clock."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cascade.runner.supervisor import RestartPolicy, Supervised, describe_exit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_delay_doubles_up_to_the_maximum() -> None:
    policy = RestartPolicy(initial_delay=1, max_delay=30, reset_after=60)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    kubernetes = RestartPolicy(initial_delay=10, max_delay=300, reset_after=600)
    assert [kubernetes.delay(n) for n in range(1, 7)] == [10, 20, 40, 80, 160, 300]


def test_a_maximum_below_the_initial_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="initial"):
        RestartPolicy(initial_delay=5, max_delay=1)


def test_exit_descriptions() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"


def test_a_crash_loop_backs_off_and_a_long_run_resets_it(tmp_path: Path) -> None:
    clock = Clock()
    process = Supervised(
        "crasher",
        [sys.executable, "-c", "raise SystemExit(3)"],
        env={},
        cwd=tmp_path,
        log=tmp_path / "crasher.log",
        health_url="http://127.0.0.1:9/",
        clock=clock,
    )
    policy = RestartPolicy(initial_delay=1, max_delay=4, reset_after=60)
    child = process.start()
    assert child.process.wait(30) == 3
    delays = []
    for _ in range(4):
        clock.now += 5  # each start runs a short while, then exits again
        delays.append(process.exited(policy))
        assert not process.due()
        clock.now += delays[-1]
        assert process.due()
        process.restart().process.wait(30)
    assert delays == [1, 2, 4, 4]
    assert process.restarts == 4
    clock.now += 61  # ran longer than reset_after: back to the first delay
    assert process.exited(policy) == 1
    assert (tmp_path / "crasher.log").read_text().count("==== cascade run: crasher started") == 5

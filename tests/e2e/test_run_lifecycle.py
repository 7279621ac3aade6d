"""`cascade run` when a function cannot start on the first launch: exit 1, say which and why
(the tail of its output), stop everything else, leave no process behind. (One that dies
while the run goes on is restarted: tests/reliability/test_supervisor.py.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import CASCADE, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def processes_using(data_dir: Path) -> list[int]:
    """PIDs whose command line names ``data_dir`` (every child gets --data-dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(data_dir).encode() in cmdline:
                found.append(int(entry.name))
    return found


def test_a_function_that_cannot_start_stops_the_run_with_its_error(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    functions.mkdir()
    for name in ("order", "inventory", "notification", "dead-letter"):
        (functions / name).symlink_to(ROOT / "functions" / name)
    (functions / "payment").mkdir()
    (functions / "payment" / "func.py").write_text(
        'raise RuntimeError("payment is broken on purpose")\n'
    )
    data = tmp_path / "data"
    result = subprocess.run(
        [
            CASCADE,
            "run",
            "--functions-dir",
            str(functions),
            "--data-dir",
            str(data),
            "--port",
            "0",
            "--base-port",
            "0",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        start_new_session=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: payment exited with code 1 while starting" in result.stdout
    assert "RuntimeError: payment is broken on purpose" in result.stdout
    assert "stopped  functions" in result.stdout
    assert not (data / "run.json").exists()
    assert processes_using(data) == []  # the broker, masters and workers are all gone

"""How ``cascade run`` places its console: the port it picks, and a taken one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cascade.runner.command import _console_port
from tests.e2e.harness import ShopRun, run_cli


@pytest.mark.parametrize(
    ("option", "broker_port", "port_option", "expected"),
    [
        (None, 8080, 8080, 8079),  # the default run: one below the broker, stable across runs
        (None, 18800, 18800, 18799),
        (None, 41234, 0, 0),  # --port 0 (tests): a free one, never a fixed one
        (0, 8080, 8080, 0),
        (9000, 8080, 8080, 9000),
    ],
)
def test_the_console_port(
    option: int | None, broker_port: int, port_option: int, expected: int
) -> None:
    assert _console_port(option, broker_port, port_option) == expected


def test_a_taken_console_port_stops_the_run_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli(
            "run",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            "0",
            "--base-port",
            "0",
            "--console-port",
            str(port),
            timeout=60,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the console cannot listen on 127.0.0.1:{port}" in result.stdout
    assert "  ready  " not in result.stdout
    assert not (tmp_path / "data" / "logs" / "broker.log").exists()


@pytest.mark.slow
def test_no_console_serves_none(tmp_path: Path) -> None:
    run = ShopRun.in_dir(tmp_path)
    run.args = ("--no-console",)
    try:
        run.start()
        state = run.state()
        assert state is not None
        assert state["console"] == {}
        table = run.output().split("ENDPOINT", 1)[1].splitlines()
        assert table[1].split()[0] == "order"  # the order API is first again
        assert all(not line.strip().startswith("console ") for line in table)
        assert run.stop() == 0, run.output()
    finally:
        run.kill_all()

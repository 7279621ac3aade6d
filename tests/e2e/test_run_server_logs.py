"""`cascade run --log kafka` and `--log nats`: the whole shop on a Kafka-protocol log (Tansu, as
`make run LOG=kafka` starts it) and on NATS JetStream, and the launcher that starts Tansu for a
command."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import (
    ShopRun,
    broker_lag,
    check_stock,
    orders_by_state,
    place_order,
    wait_until,
)
from tests.log_servers import SERVER_LOGS, log_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.mark.parametrize("kind", SERVER_LOGS)
def test_the_shop_confirms_orders_on_a_server_log(tmp_path: Path, kind: str) -> None:
    with log_server(kind) as log_args:
        run = ShopRun.in_dir(tmp_path)
        run.args = tuple(log_args)
        try:
            run.start()
            assert f"starting the broker ({kind} log at {log_args[3]})" in run.output()
            order_url = run.url("order")
            ids = [place_order(order_url, [("STICKER", 1)]) for _ in range(5)]
            ids.append(place_order(order_url, [("VINYL", 1)]))  # out of stock

            def all_final() -> dict[str, str] | None:
                states = orders_by_state(order_url)
                done = all(states.get(i) in ("CONFIRMED", "CANCELLED") for i in ids)
                return states if done and broker_lag(run.broker) == 0 else None

            states = wait_until(all_final, 90, f"every order to be final on the {kind} log")
            assert [states[i] for i in ids] == ["CONFIRMED"] * 5 + ["CANCELLED"]
            check_stock(run.url("inventory"))
            # The broker's topic or stream is on the server, not in the data directory.
            assert not list(run.data_dir.glob("*.log.sqlite3"))
            assert run.stop() == 0, run.output()
        finally:
            run.kill_all()


@pytest.mark.kafka
def test_the_launcher_runs_a_command_against_a_fresh_tansu_and_stops_it() -> None:
    probe = (
        "import socket, sys; host, port = sys.argv[-1].split(':'); "
        "socket.create_connection((host, int(port)), timeout=5).close(); "
        "print(sys.argv[-2], sys.argv[-1]); sys.exit(3)"
    )
    result = subprocess.run(
        [sys.executable, "-m", "scripts.kafka_server", sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stdout + result.stderr  # the command's own status
    flag, address = result.stdout.splitlines()[-1].split()
    assert flag == "--bootstrap-servers"
    host, port = address.split(":")
    with pytest.raises(ConnectionRefusedError):  # stopped once the command ended
        socket.create_connection((host, int(port)), timeout=2).close()

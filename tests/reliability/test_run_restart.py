"""`cascade run` stopped mid-stream and started again on the same data directory loses nothing.

Orders are placed without pause (each with its own Idempotency-Key, retried until answered,
wherever the order API runs now) while the run is stopped: once with Ctrl-C (SIGINT: the
broker drains, gunicorn drains, exit 0), once by SIGKILL of every process of the run (the
runner's group and each child's group: a power cut). The same data directory is then run
again, the rest of the orders are placed, and every order must end final with no duplicate,
every SKU conserved with nothing reserved, and one email per order.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.harness import ShopRun
from tests.reliability.orders import Placer, settle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ORDERS = 120
STOP_AFTER = 40


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_a_stopped_run_resumes_and_every_order_completes(tmp_path: Path, how: str) -> None:
    run = ShopRun.in_dir(tmp_path)
    try:
        run.start()
        placer = Placer(run, ORDERS, marks=(STOP_AFTER,))
        placer.start()
        assert placer.reached(STOP_AFTER, 120), f"orders are not being placed: {placer.failure}"
        if how == "sigint":
            assert run.stop(signal.SIGINT) == 0, run.output()
            assert "stopped;" in run.output()
        else:
            run.kill_all()
        assert not (tmp_path / "data" / "run.json").exists() or how == "sigkill"

        run.start()  # same data directory, new ports
        settle(run, placer, ORDERS, crash=how == "sigkill")
        assert run.stop(signal.SIGTERM) == 0, run.output()
    finally:
        run.kill_all()

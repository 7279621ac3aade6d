"""`python -m bench.chain_throughput` in a tiny configuration: 20 orders through the real shop
under `cascade run`, then the result JSON must hold sane figures (every order final, no errors,
CPU for every process, every hop of the saga). No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.chain_throughput import TARGET_ORDERS_PER_S, main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ORDERS = 20
TRIGGERS = (
    "default/inventory-order-created",
    "default/payment-inventory-reserved",
    "default/order-payment-authorized",
    "default/inventory-order-confirmed",
    "default/notification-order-confirmed",
    "default/dead-letter-order-confirmed",
)


def test_a_tiny_run_confirms_every_order_and_reports_each_process_and_hop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "chain.json"
    argv = ["--orders", str(ORDERS), "--warmup-orders", "0", "--clients", "4", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "confirmed orders/s" in printed
    assert "measured:" in printed  # progress while the orders go through

    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "chain_throughput"
    result = payload["result"]
    assert result["errors"] == []
    assert result["accepted"] == result["confirmed"] == ORDERS
    assert result["cancelled"] == result["pending"] == result["not_accepted"] == 0
    assert result["broker_idle_after"] is True
    assert result["confirmed_per_s"] > 0
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert result["latency_ms"]["p99"] <= result["latency_ms"]["max"]

    processes = {"broker", "order", "inventory", "payment", "notification", "dead-letter"}
    assert processes <= set(result["cpu_ms_per_order"])
    assert all(result["cpu_ms_per_order"][name] > 0 for name in processes)

    hops = {hop["hop"]: hop for hop in result["hops"]}
    for trigger in TRIGGERS:
        assert hops[trigger]["count"] == ORDERS, trigger
        assert hops[trigger]["handler_ms"]["p50"] > 0
        # Each attempt holds its handler, so their medians keep that order.
        assert hops[trigger]["attempt_ms"]["p50"] >= hops[trigger]["handler_ms"]["p50"]
    assert hops["order: POST /orders"]["count"] == ORDERS
    # The saga's order: confirmation happens after the reservation and the payment.
    names = [hop["hop"] for hop in result["hops"]]
    assert names.index(TRIGGERS[0]) < names.index(TRIGGERS[1]) < names.index(TRIGGERS[2])

    (check,) = payload["checks"]
    assert check["value"] == result["confirmed_per_s"]
    assert check["floor"] == TARGET_ORDERS_PER_S
    assert check["verdict"] == ("PASS" if check["value"] >= TARGET_ORDERS_PER_S else "MISS")

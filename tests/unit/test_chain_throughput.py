"""bench.chain_throughput's own logic, without servers: flags, figures, hops, errors."""

from __future__ import annotations

import pytest
from bench._hops import hops_of
from bench._report import Floor, percentile
from bench.chain_throughput import _parse, errors_of, order_figures

from cascade.telemetry.tracing import CONVERSATION_ID
from cascade.traces.store import StoredSpan

MS = 1_000_000


def span(
    span_id: str, parent: str | None, name: str, kind: int, service: str, start: int, end: int,
    order: str | None = "o1",
) -> StoredSpan:  # fmt: skip
    attributes = {CONVERSATION_ID: order} if order else {}
    return StoredSpan("t" * 32, span_id, parent, name, kind, service, start * MS, end * MS,
                      attributes=attributes)  # fmt: skip


def test_hops_measure_wait_attempt_and_handler_from_the_saga_spans() -> None:
    spans = [
        span("api", None, "POST /orders", 2, "order", 0, 10, order=None),
        span("relay", "api", "send com.example.shop.order.created", 4, "order", 14, 20),
        span("in", "relay", "POST /default/shop", 2, "cascade-broker", 18, 19),
        span("d1", "in", "deliver default/inventory-order-created", 3, "cascade-broker", 25, 45),
        span("p1", "d1", "process com.example.shop.order.created", 5, "inventory", 30, 40),
        span("r1", "p1", "send com.example.shop.inventory.reserved", 4, "cascade-broker", 41, 42),
        span("d2", "r1", "deliver default/payment-inventory-reserved", 3, "cascade-broker", 50, 58),
        span("p2", "d2", "process com.example.shop.inventory.reserved", 5, "payment", 51, 55),
        # Another order's spans are left out.
        span(
            "x",
            "in",
            "deliver default/inventory-order-created",
            3,
            "cascade-broker",
            0,
            999,
            order="o2",
        ),  # fmt: skip
    ]
    hops = {h["hop"]: h for h in hops_of(spans, {"o1"})}
    assert list(hops) == [
        "order: POST /orders",
        "order: publish com.example.shop.order.created",
        "default/inventory-order-created",
        "default/payment-inventory-reserved",
    ]
    assert hops["order: POST /orders"]["handler_ms"] == {"p50": 10.0, "p99": 10.0}
    relay = hops["order: publish com.example.shop.order.created"]
    assert relay["wait_ms"]["p50"] == 4.0
    assert relay["attempt_ms"]["p50"] == 6.0
    inventory = hops["default/inventory-order-created"]
    assert inventory["count"] == 1
    assert inventory["wait_ms"]["p50"] == 6.0  # stored at 19, delivered from 25
    assert inventory["attempt_ms"]["p50"] == 20.0
    assert inventory["handler_ms"]["p50"] == 10.0
    assert inventory["starts_after_ms"] == 11.0  # after the relay's send at 14
    assert hops["default/payment-inventory-reserved"]["wait_ms"]["p50"] == 8.0


def test_hops_of_no_spans_is_empty_and_a_missing_parent_leaves_the_wait_out() -> None:
    assert hops_of([], {"o1"}) == []
    lone = span("d", "gone", "deliver default/x", 3, "cascade-broker", 0, 5)
    (hop,) = hops_of([lone], {"o1"})
    assert hop["wait_ms"] is None
    assert hop["handler_ms"] is None
    assert hop["count"] == 1


def test_order_figures_rate_is_confirmed_over_first_placed_to_last_confirmed() -> None:
    states = {
        "a": ("CONFIRMED", "2026-12-04T20:00:00.000Z", "2026-12-04T20:00:00.100Z"),
        "b": ("CONFIRMED", "2026-12-04T20:00:00.500Z", "2026-12-04T20:00:01.000Z"),
        "c": ("CANCELLED", "2026-12-04T20:00:00.200Z", "2026-12-04T20:00:09.000Z"),
        "d": ("PENDING", "2026-12-04T20:00:00.300Z", "2026-12-04T20:00:00.300Z"),
    }
    figures = order_figures(states)
    assert (figures["confirmed"], figures["cancelled"], figures["pending"]) == (2, 1, 1)
    assert figures["window_s"] == 1.0
    assert figures["confirmed_per_s"] == 2.0
    assert figures["latency_ms"]["p50"] == 500.0
    assert figures["latency_ms"]["max"] == 500.0


def test_order_figures_without_confirmed_orders_are_zero() -> None:
    figures = order_figures({})
    assert figures["confirmed_per_s"] == 0.0
    assert figures["latency_ms"]["p99"] == 0.0


def _result(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "not_accepted": 0, "pending": 0, "accepted": 3, "confirmed": 3, "cancelled": 0,
        "restarts": 0, "broker_idle_after": True,
    }  # fmt: skip
    return {**base, **changes}


def test_errors_name_lost_unfinished_cancelled_restarted_and_busy_runs() -> None:
    assert errors_of(_result()) == []
    assert len(errors_of(_result(not_accepted=1))) == 1
    assert "only 2 of 3" in errors_of(_result(confirmed=2, pending=1))[0]
    assert "CANCELLED" in errors_of(_result(confirmed=2, cancelled=1))[0]
    assert "restarts" in errors_of(_result(restarts=2))[0]
    assert "in flight" in errors_of(_result(broker_idle_after=False))[0]


def test_floor_and_percentile() -> None:
    assert Floor("x", 200.0, 200.0, "orders/s").verdict == "PASS"
    assert Floor("x", 199.9, 200.0, "orders/s").as_dict()["verdict"] == "MISS"
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0


def test_flags_quick_defaults_and_explicit_values(tmp_path: object) -> None:
    quick = _parse(["--quick"])
    assert (quick.orders, quick.warmup_orders, quick.out.name) == (
        200, 20, "chain_throughput.quick.json"
    )  # fmt: skip
    full = _parse([])
    assert (full.orders, full.clients, full.warmup_orders) == (2000, 16, 100)
    assert full.out.name == "chain_throughput.json"
    explicit = _parse(["--quick", "--orders", "7", "--warmup-orders", "0", "--clients", "3"])
    assert (explicit.orders, explicit.warmup_orders, explicit.clients) == (7, 0, 3)


@pytest.mark.parametrize(
    "argv",
    [
        ["--orders", "0"],
        ["--orders", "-5"],
        ["--orders", "many"],
        ["--clients", "0"],
        ["--clients", "1.5"],
        ["--warmup-orders", "-1"],
        ["--warmup-orders", "x"],
        ["--seed", "abc"],
        ["--out"],
        ["--no-such-flag"],
    ],
)
def test_hostile_flags_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err

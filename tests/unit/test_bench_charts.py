"""bench.charts on small synthetic results: which PNGs get written, and that they are images."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from bench.charts import (
    draw_latency,
    draw_ratios,
    draw_scaling,
    draw_throughput,
    latency_percentiles,
    main,
    write_charts,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(rps: float, **extra: float) -> dict[str, float]:
    return {"requests_per_s": rps, **extra}


def broker_like() -> dict[str, Any]:
    """Rows with delivery percentiles, two rates, a targeted ratio, one without and a limit."""
    return {
        "benchmark": "demo_broker",
        "date": "2026-12-04T20:00:00Z",
        "machine": {"load_average_1m": 1.5},
        "source": {"commit": "0123456789abcdef", "dirty": False},
        "rows": [
            {
                "key": "x-direct",
                "label": "x: direct",
                "median": {
                    "requests_per_s": 1000.0,
                    "delivered_per_s": 990.0,
                    "p50_ms": 1.0,
                    "p99_ms": 4.0,
                    "delivery_p10_ms": 0.5,
                    "delivery_p50_ms": 1.1,
                    "delivery_p99_ms": 4.2,
                    "delivery_p99_9_ms": 9.0,
                    "delivery_max_ms": 12.0,
                },
                "spread_requests_per_s": 0.1,
                "runs": [_run(900.0, delivered_per_s=890.0), _run(1100.0, delivered_per_s=1000.0)],
            },
            {
                "key": "x-broker",
                "label": "x: via broker",
                "median": {
                    "requests_per_s": 800.0,
                    "delivered_per_s": 500.0,
                    "delivery_p50_ms": 3.0,
                    "delivery_p99_ms": 30.0,
                },
                "spread_requests_per_s": 0.2,
                "runs": [_run(800.0, delivered_per_s=500.0)],
            },
        ],
        "ratios": [
            {
                "name": "broker / direct",
                "numerator": "x-broker",
                "denominator": "x-direct",
                "value": 0.5,
                "target": 0.5,
                "verdict": "PASS",
            },
            {
                "name": "cpu ratio",
                "numerator": "a",
                "denominator": "b",
                "value": 1.3,
                "target": None,
                "verdict": "-",
            },
        ],
        "limits": [{"name": "lost", "value": 0, "limit": 0, "unit": "events", "verdict": "PASS"}],
    }


def scaling_like() -> dict[str, Any]:
    rows = []
    for series, base in (("cascade", 1000.0), ("bare-flask", 600.0)):
        for n in (1, 2, 3):
            rows.append(
                {
                    "key": f"{series}-w{n}",
                    "label": f"{series}, {n} workers",
                    "series": series,
                    "workers": n,
                    "median": {"requests_per_s": base * n, "p50_ms": 2.0, "p99_ms": 9.0},
                    "memory": {"master_mb": 40.0, "workers_mb": [60.0 + n] * n},
                    "runs": [_run(base * n)],
                }
            )
    return {
        "benchmark": "demo_scaling",
        "date": "2026-12-04T20:00:00Z",
        "rows": rows,
        "ratios": [],
        "limits": [{"name": "RSS", "value": 63.0, "limit": 80.0, "unit": "MB", "verdict": "PASS"}],
    }


def _write(directory: Path, name: str, payload: dict[str, Any]) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps(payload))
    return path


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 2000  # axes, bars and text, not an empty canvas


class TestWriteCharts:
    def test_broker_like_result_gets_throughput_ratio_and_latency_charts(
        self, tmp_path: Path
    ) -> None:
        written = write_charts(_write(tmp_path, "demo_broker", broker_like()))
        assert [p.name for p in written] == [
            "demo_broker.throughput.png",
            "demo_broker.ratios.png",
            "demo_broker.latency.png",
        ]
        for path in written:
            _assert_png(path)

    def test_scaling_rows_get_a_scaling_chart(self, tmp_path: Path) -> None:
        written = write_charts(_write(tmp_path, "demo_scaling", scaling_like()))
        assert "demo_scaling.scaling.png" in [p.name for p in written]
        for path in written:
            _assert_png(path)

    def test_quick_results_get_quick_names(self, tmp_path: Path) -> None:
        path = tmp_path / "demo_broker.quick.json"
        path.write_text(json.dumps(broker_like()))
        assert [p.name for p in write_charts(path)][0] == "demo_broker.quick.throughput.png"

    def test_a_result_without_rows_or_checks_draws_nothing(self, tmp_path: Path) -> None:
        path = _write(tmp_path, "bare", {"benchmark": "bare", "rows": [], "ratios": []})
        assert write_charts(path) == []
        assert list(tmp_path.glob("*.png")) == []

    def test_not_a_result_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "odd.json"
        path.write_text("[1, 2]")
        with pytest.raises(ValueError, match="not a benchmark result"):
            write_charts(path)


class TestWhatEachChartUses:
    def test_delivery_percentiles_win_over_request_latency(self) -> None:
        kind, points = latency_percentiles(broker_like()["rows"][0])
        assert kind == "delivery"
        assert points == {10.0: 0.5, 50.0: 1.1, 99.0: 4.2, 99.9: 9.0}

    def test_request_latency_when_there_is_no_delivery(self) -> None:
        kind, points = latency_percentiles(scaling_like()["rows"][0])
        assert (kind, points) == ("request", {50.0: 2.0, 99.0: 9.0})

    def test_rows_without_series_have_no_scaling_chart(self) -> None:
        assert draw_scaling(broker_like()) is None

    def test_all_zero_latencies_have_no_latency_chart(self) -> None:
        result = copy.deepcopy(scaling_like())
        for row in result["rows"]:
            row["median"].update(p50_ms=0.0, p99_ms=0.0)
        assert draw_latency(result) is None

    def test_no_rate_no_throughput_chart(self) -> None:
        result = {"benchmark": "b", "rows": [{"key": "k", "median": {"p50_ms": 1.0}}]}
        assert draw_throughput(result) is None

    def test_ratios_chart_draws_target_lines(self) -> None:
        fig = draw_ratios(broker_like())
        assert fig is not None
        ratio_axes, limit_axes = fig.axes
        # One target line on the ratio panel (one ratio has a target), one on the limit's.
        assert len(ratio_axes.collections) == 1
        assert len(limit_axes.collections) == 1
        labels = [t.get_text() for t in ratio_axes.get_yticklabels()]
        assert labels == ["broker / direct", "cpu ratio"]


class TestFloors:
    def test_a_result_with_only_a_floor_in_checks_gets_a_ratios_chart(self, tmp_path: Path) -> None:
        # bench.chain_throughput's format: no rows, one Floor in "checks".
        payload = {
            "benchmark": "demo_chain",
            "checks": [
                {
                    "name": "orders/s",
                    "value": 7.0,
                    "floor": 200,
                    "unit": "orders/s",
                    "verdict": "MISS",
                }
            ],
        }
        written = write_charts(_write(tmp_path, "demo_chain", payload))
        assert [p.name for p in written] == ["demo_chain.ratios.png"]
        _assert_png(written[0])
        fig = draw_ratios(payload)
        assert fig is not None
        (panel,) = fig.axes
        assert panel.collections[0].get_segments()[0][0][0] == 200.0  # the floor's line


class TestMain:
    def test_draws_named_results_and_reports_missing_ones(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _write(tmp_path, "demo_broker", broker_like())
        status = main(["--results", str(tmp_path), "demo_broker", "absent_bench"])
        out = capsys.readouterr().out
        assert status == 0
        assert "wrote" in out
        assert "demo_broker.latency.png" in out
        assert "absent_bench: not run" in out
        assert (tmp_path / "demo_broker.ratios.png").stat().st_size > 0

    def test_default_is_every_plain_result(self, tmp_path: Path) -> None:
        _write(tmp_path, "demo_scaling", scaling_like())
        _write(tmp_path, "chaos-sqlite-20261204T172731Z", {"benchmark": "chaos"})
        (tmp_path / "demo_scaling.quick.json").write_text(json.dumps(scaling_like()))
        assert main(["--results", str(tmp_path)]) == 0
        assert {p.name.split(".")[0] for p in tmp_path.glob("*.png")} == {"demo_scaling"}
        assert not list(tmp_path.glob("*.quick.*.png"))

    @pytest.mark.parametrize("name", ["../etc/passwd", "a.b", "Name", ""])
    def test_hostile_names_are_refused(
        self, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["--results", str(tmp_path), name]) == 1
        assert "not a benchmark name" in capsys.readouterr().err

    def test_unreadable_json_fails(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "broken.json").write_text("{not json")
        assert main(["--results", str(tmp_path), "broken"]) == 1
        assert "cannot read" in capsys.readouterr().err

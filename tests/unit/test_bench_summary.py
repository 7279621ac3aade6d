"""bench.summary on synthetic results: one line per target, verdicts, not-run and noise notes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from bench.summary import main, summarize


def result(name: str, date: str = "2026-12-04T21:00:00Z", **extra: Any) -> dict[str, Any]:
    return {
        "benchmark": name,
        "date": date,
        "machine": {"load_average_1m": 7.5},
        "rows": [
            {"key": "base", "spread_requests_per_s": 0.9},
            {"key": "calm", "spread_requests_per_s": 0.1},
            {"key": "cascade", "spread_requests_per_s": 2.0},
        ],
        "ratios": [
            {"name": "cascade / base", "denominator": "base", "value": 0.8, "target": 0.7},
            {"name": "cascade / calm", "denominator": "calm", "value": 1.2, "target": 1.5},
            # No target: informative only, no line and no note (its baseline moved a lot).
            {"name": "base / cascade", "denominator": "cascade", "value": 1.1, "target": None},
        ],
        "limits": [
            {"name": "CPU added", "value": 279.4, "limit": 100, "unit": "µs/req"},
            {"name": "events lost", "value": 0, "limit": 0, "unit": "events"},
        ],
        **extra,
    }


def write(directory: Path, name: str, payload: dict[str, Any], quick: bool = False) -> None:
    suffix = ".quick.json" if quick else ".json"
    (directory / f"{name}{suffix}").write_text(json.dumps(payload))


class TestSummarize:
    def test_one_line_per_target_with_verdict_and_figure(self, tmp_path: Path) -> None:
        write(tmp_path, "alpha", result("alpha"))
        summary = summarize(["alpha"], tmp_path)
        targets = [line for line in summary.lines if not line.startswith("NOTE")]
        assert targets == [
            "PASS  alpha: cascade / base = 0.80x (target >= 0.7x)",
            "MISS  alpha: cascade / calm = 1.20x (target >= 1.5x)",
            "MISS  alpha: CPU added = 279 µs/req (limit <= 100 µs/req)",
            "PASS  alpha: events lost = 0 events (limit <= 0 events)",
        ]
        assert (summary.passed, summary.targets) == (2, 4)
        assert summary.final_line == "2 of 4 targets passed (2 MISS)"

    def test_floors_in_checks_are_targets_too(self, tmp_path: Path) -> None:
        # bench.chain_throughput's format: no rows, a Floor in "checks".
        payload = {
            "benchmark": "chain",
            "date": "2026-12-04T21:00:00Z",
            "checks": [
                {"name": "confirmed orders/s", "value": 7.04, "floor": 200, "unit": "orders/s"},
                {"name": "p99 ms", "value": 90.0, "limit": 100, "unit": "ms"},
                {"name": "informative", "value": 3.0, "unit": "s"},
            ],
        }
        write(tmp_path, "chain", payload)
        summary = summarize(["chain"], tmp_path)
        assert summary.lines == [
            "MISS  chain: confirmed orders/s = 7.0 orders/s (target >= 200 orders/s)",
            "PASS  chain: p99 ms = 90 ms (limit <= 100 ms)",
        ]
        assert summary.final_line == "1 of 2 targets passed (1 MISS)"

    def test_the_verdict_is_recomputed_not_copied(self, tmp_path: Path) -> None:
        payload = result("alpha")
        payload["ratios"][1]["verdict"] = "PASS"  # a stale or wrong verdict in the file
        write(tmp_path, "alpha", payload)
        assert "MISS  alpha: cascade / calm" in "\n".join(summarize(["alpha"], tmp_path).lines)

    def test_missing_benchmark_is_not_run(self, tmp_path: Path) -> None:
        write(tmp_path, "alpha", result("alpha"))
        summary = summarize(["alpha", "chain_throughput"], tmp_path)
        assert f"----  chain_throughput: not run (no {tmp_path / 'chain_throughput.json'})" in (
            summary.lines
        )
        assert summary.not_run == ["chain_throughput"]
        assert summary.final_line.endswith("; not run: chain_throughput")

    def test_results_older_than_the_run_are_not_run(self, tmp_path: Path) -> None:
        write(tmp_path, "alpha", result("alpha", date="2026-12-04T20:59:59Z"))
        write(tmp_path, "beta", result("beta", date="2026-12-04T21:00:00Z"))
        since = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)
        summary = summarize(["alpha", "beta"], tmp_path, since=since)
        assert summary.not_run == ["alpha"]
        assert any(
            "alpha.json is from 2026-12-04T20:59:59Z, before this run" in x for x in summary.lines
        )
        assert summary.targets == 4  # beta's only

    def test_quick_reads_the_quick_files(self, tmp_path: Path) -> None:
        write(tmp_path, "alpha", result("alpha"), quick=True)
        assert summarize(["alpha"], tmp_path).not_run == ["alpha"]
        assert summarize(["alpha"], tmp_path, quick=True).targets == 4

    def test_a_moved_baseline_of_a_target_gets_a_note(self, tmp_path: Path) -> None:
        write(tmp_path, "alpha", result("alpha"))
        notes = [x for x in summarize(["alpha"], tmp_path).lines if x.startswith("NOTE")]
        assert len(notes) == 1
        assert notes[0].startswith("NOTE: alpha: the baseline base moved by 90% of its median")
        assert "load average 7.5" in notes[0]

    def test_notes_and_errors_in_the_results_are_printed(self, tmp_path: Path) -> None:
        write(tmp_path, "alpha", result("alpha", notes=["no PostgreSQL row"], errors=3))
        lines = summarize(["alpha"], tmp_path).lines
        assert "NOTE: alpha: no PostgreSQL row" in lines
        assert any(x.startswith("NOTE: alpha: 3 errors in this run") for x in lines)

    def test_a_result_with_no_targets_says_so(self, tmp_path: Path) -> None:
        write(tmp_path, "gamma", {"benchmark": "gamma", "date": "2026-12-04T21:00:00Z"})
        summary = summarize(["gamma"], tmp_path)
        assert summary.lines == ["----  gamma: no targets in its results"]
        assert summary.final_line == "0 of 0 targets passed"

    @pytest.mark.parametrize("content", ["{oops", "[1]", '{"rows": []}'])
    def test_unreadable_results_are_not_run(self, tmp_path: Path, content: str) -> None:
        (tmp_path / "alpha.json").write_text(content)
        summary = summarize(["alpha"], tmp_path)
        assert summary.not_run == ["alpha"]
        assert "unreadable" in summary.lines[0]

    def test_malformed_entries_are_skipped(self, tmp_path: Path) -> None:
        payload = result("alpha")
        payload["ratios"] = [{"name": "x", "value": "fast", "target": 1}, {"target": True}]
        payload["limits"] = [{"name": "y", "value": None, "limit": 1}]
        write(tmp_path, "alpha", payload)
        assert summarize(["alpha"], tmp_path).targets == 0


class TestMain:
    def test_prints_lines_then_the_count(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        write(tmp_path, "alpha", result("alpha"))
        assert main(["--results", str(tmp_path), "alpha"]) == 0
        out = capsys.readouterr().out.strip().splitlines()
        assert out[-1] == "2 of 4 targets passed (2 MISS)"
        assert "PASS  alpha: cascade / base = 0.80x (target >= 0.7x)" in out

    def test_exit_status_1_when_a_benchmark_did_not_run(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        write(tmp_path, "alpha", result("alpha"))
        args = ["--results", str(tmp_path), "--since", "2026-12-04T21:00:00Z", "alpha", "beta"]
        assert main(args) == 1
        assert "not run: beta" in capsys.readouterr().out

    @pytest.mark.parametrize(
        "argv",
        [
            [],  # a name is required
            ["../x"],
            ["a.quick"],
            ["--since", "yesterday", "alpha"],
            ["--since", "2026-13-01T00:00:00Z", "alpha"],
        ],
    )
    def test_bad_arguments_are_usage_errors(
        self, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "usage:" in capsys.readouterr().err

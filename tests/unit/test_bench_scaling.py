"""bench.function_scaling's logic without servers: flags, ratios, the memory check, /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench._memory import child_pids, rss_bytes, status_kib
from bench.function_scaling import (
    LIMIT_WORKER_RSS_MB,
    Memory,
    memory_limit,
    parse_args,
    row_key,
    scaling_ratios,
    server_memory,
)


class TestFlags:
    def test_defaults(self) -> None:
        options, counts = parse_args([])
        assert counts == (1, 2, 3, 4)
        assert options.out.name == "function_scaling.json"

    def test_counts_are_sorted(self) -> None:
        assert parse_args(["--workers", "3, 1", "--quick"])[1] == (1, 3)
        assert parse_args(["--quick"])[0].out.name == "function_scaling.quick.json"

    @pytest.mark.parametrize(
        "value",
        ["", "0", "1,,2", "two", "1,1", "-1", "17", "1;2", "1.5", "99999999999999999999", "²"],
    )
    def test_malformed_worker_counts_are_usage_errors(
        self, value: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exc:
            parse_args(["--workers", value])
        assert exc.value.code == 2
        assert "--workers" in capsys.readouterr().err


def _medians(rates: dict[str, float]) -> dict[str, dict[str, float]]:
    return {key: {"requests_per_s": value} for key, value in rates.items()}


class TestRatios:
    def test_against_bare_flask_and_against_one_worker(self) -> None:
        med = _medians(
            {"cascade-w1": 500, "bare-flask-w1": 1000, "cascade-w2": 900, "bare-flask-w2": 1500}
        )
        ratios = {q.name: q for q in scaling_ratios(med, (1, 2))}
        assert ratios["cascade-w1 / bare-flask-w1"].value == pytest.approx(0.5)
        assert ratios["cascade-w2 / bare-flask-w2"].value == pytest.approx(0.6)
        assert ratios["cascade-w2 / cascade-w1"].value == pytest.approx(1.8)
        assert ratios["bare-flask-w2 / bare-flask-w1"].value == pytest.approx(1.5)
        assert all(q.target is None for q in ratios.values())  # the curve is the result

    def test_row_keys(self) -> None:
        assert row_key("cascade", 3) == "cascade-w3"


class TestMemoryLimit:
    def test_the_largest_cascade_worker_counts(self) -> None:
        memory = {
            "cascade-w1": Memory(50.0, (70.0,)),
            "cascade-w2": Memory(50.0, (79.0, 81.5)),
            "bare-flask-w2": Memory(20.0, (200.0, 30.0)),  # not a Cascade worker
        }
        limit = memory_limit(memory)
        assert limit is not None
        assert (limit.value, limit.limit, limit.unit) == (81.5, LIMIT_WORKER_RSS_MB, "MB")
        assert limit.verdict == "MISS"

    def test_under_the_limit_passes(self) -> None:
        limit = memory_limit({"cascade-w1": Memory(50.0, (79.9,))})
        assert limit is not None
        assert limit.verdict == "PASS"

    def test_no_workers_no_check(self) -> None:
        assert memory_limit({"cascade-w1": Memory(50.0, ())}) is None


def _fake_proc(root: Path, pid: int, status: str, children: dict[int, str]) -> None:
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "status").write_text(status)
    for tid, kids in children.items():
        task = root / str(pid) / "task" / str(tid)
        task.mkdir(parents=True)
        (task / "children").write_text(kids)


class TestProc:
    def test_reads_vmrss_and_children_of_a_fake_proc(self, tmp_path: Path) -> None:
        _fake_proc(tmp_path, 10, "Name:\tgunicorn\nVmRSS:\t   81920 kB\n", {10: "12 11 ", 13: "12"})
        assert child_pids(10, tmp_path) == [11, 12]
        assert status_kib(10, "VmRSS", tmp_path) == 81920
        assert rss_bytes(10, tmp_path) == 81920 * 1024
        assert status_kib(10, "RssAnon", tmp_path) is None  # field absent

    def test_a_gone_process_has_no_memory(self, tmp_path: Path) -> None:
        assert rss_bytes(424242, tmp_path) is None
        assert child_pids(424242, tmp_path) == []

    def test_a_malformed_status_line_is_an_error(self, tmp_path: Path) -> None:
        _fake_proc(tmp_path, 10, "VmRSS:\tlots\n", {})
        with pytest.raises(ValueError, match="unexpected VmRSS"):
            rss_bytes(10, tmp_path)

    def test_real_process_and_its_child(self) -> None:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert child.pid in child_pids(os.getpid())
            memory = server_memory(os.getpid())
            assert memory.master_mb > 1
            assert len(memory.workers_mb) >= 1
            assert all(mb > 0 for mb in memory.workers_mb)
        finally:
            child.kill()
            child.wait()

"""The benchmark harness's own logic: parsing, statistics, ratios, flags, JSON. No timings."""

from __future__ import annotations

import json
import subprocess
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from bench._cli import FULL, QUICK, parse_options
from bench._deliveries import DeliveryFiles, delivery_line, worker_file
from bench._load import Measurement, fresh_run_id, measure_all_workers
from bench._report import (
    Limit,
    Ratio,
    failed_requests,
    finish,
    interleaved,
    markdown_table,
    medians,
    noise_note,
    row_result,
    run_interleaved,
    source_revision,
    spread,
    write_json,
)
from bench._servers import REPO_ROOT, free_port, runtime_gunicorn_setup
from bench._venvs import FF_REQUIREMENTS, STAMP, VenvUnavailable, ensure_venv, venv_python
from bench._wrk import (
    DEFAULT_EVENT,
    BenchError,
    WrkResult,
    lua_string,
    parse_wrk_output,
    render_script,
)
from bench.apps.subscriber import RunStats
from bench.broker_throughput import Delivery, manifests, parse_args, row_key
from bench.function_scaling import _argv as scaling_argv
from bench.function_throughput import (
    _limits,
    _ratios,
    baseline_servers,
    cascade_servers,
    ff_python,
    ff_servers,
    main,
    pinned_version,
    postgres_reachable,
)

from cascade.settings import Settings

WRK_STDOUT = """Running 2s test @ http://127.0.0.1:8000/
  1 threads and 16 connections
WRK_JSON {"duration_us": 2000000, "requests": 9000, "sent": 9016, "statuses": {"202": 8990, \
"503": 10}, "errors": {"connect": 0, "read": 2, "write": 0, "status": 10, "timeout": 1}, \
"latency_us": {"p50": 2750, "p90": 4000, "p99": 6550, "max": 20000, "mean": 2900.5}}
"""


def _result(statuses: dict[int, int], errors: dict[str, int] | None = None) -> WrkResult:
    return WrkResult(
        duration_s=2.0,
        requests=sum(statuses.values()),
        sent=sum(statuses.values()) + 3,
        statuses=statuses,
        errors=errors or {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
        latency_ms={"p50": 1.5, "p99": 9.0},
    )


class TestWrkOutput:
    def test_parses_the_done_hook_line(self) -> None:
        result = parse_wrk_output(WRK_STDOUT)
        assert result.duration_s == 2.0
        assert result.requests == 9000
        assert result.sent == 9016
        assert result.statuses == {202: 8990, 503: 10}
        assert result.latency_ms["p50"] == pytest.approx(2.75)
        assert result.latency_ms["p99"] == pytest.approx(6.55)

    def test_derived_counts(self) -> None:
        result = parse_wrk_output(WRK_STDOUT)
        assert result.requests_per_s == pytest.approx(4500.0)
        assert result.ok == 8990
        assert result.non_2xx == 10
        # wrk's own "status" error count is the non-2xx count, not a socket error.
        assert result.socket_errors == 3

    def test_missing_line_is_a_clear_error(self) -> None:
        with pytest.raises(BenchError, match="WRK_JSON"):
            parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")

    def test_zero_duration_gives_zero_rate(self) -> None:
        result = WrkResult(0.0, 0, 0, {}, {})
        assert result.requests_per_s == 0.0


class TestLuaScript:
    def test_lua_string_escapes(self) -> None:
        assert lua_string('a"b') == '"a\\"b"'
        assert lua_string("back\\slash") == '"back\\\\slash"'
        assert lua_string("line\nbreak") == '"line\\010break"'
        assert lua_string("é") == '"\\195\\169"'

    def test_script_carries_event_and_run_id(self) -> None:
        script = render_script(DEFAULT_EVENT, "rdeadbeef")
        assert 'RUN_ID = "rdeadbeef"' in script
        assert '["ce-type"] = "com.example.bench.ping"' in script
        assert '["content-type"] = "application/json"' in script
        assert '\\"order_id\\"' in script
        assert "function done(summary, latency, requests)" in script

    def test_pacing_defines_wrk_delay_hook_only_when_asked(self) -> None:
        assert "function delay()" not in render_script(DEFAULT_EVENT, "r1").split("-- wrk")[0]
        assert "function delay() return 10 end" in render_script(DEFAULT_EVENT, "r1", pace_ms=10)

    def test_event_is_a_complete_binary_cloudevent_of_about_300_bytes(self) -> None:
        headers = DEFAULT_EVENT.headers
        for attribute in ("ce-specversion", "ce-id", "ce-source", "ce-type"):
            assert headers[attribute]
        assert json.loads(DEFAULT_EVENT.body)["quantity"] == 3
        assert 250 <= DEFAULT_EVENT.wire_size() <= 400

    def test_run_ids_have_no_dash(self) -> None:
        # The subscriber groups deliveries by the ce-id prefix before the first "-".
        ids = {fresh_run_id() for _ in range(20)}
        assert len(ids) == 20
        assert all("-" not in i for i in ids)


class TestStatistics:
    def test_medians_per_key(self) -> None:
        samples = [{"rps": 10.0, "p99": 5.0}, {"rps": 30.0, "p99": 1.0}, {"rps": 20.0}]
        assert medians(samples) == {"rps": 20.0, "p99": 3.0}

    def test_ratio_verdicts(self) -> None:
        passing = Ratio.of("c/a", ("c", 70.0), ("a", 100.0), target=0.7)
        missing = Ratio.of("c/a", ("c", 69.0), ("a", 100.0), target=0.7)
        informative = Ratio.of("c/a", ("c", 50.0), ("a", 100.0))
        assert (passing.value, passing.verdict) == (pytest.approx(0.7), "PASS")
        assert missing.verdict == "MISS"
        assert informative.verdict == "-"
        assert passing.as_dict()["verdict"] == "PASS"
        assert passing.as_dict()["denominator"] == "a"

    def test_limit_verdicts(self) -> None:
        assert Limit("cpu", 100.0, 100.0, "µs/req").verdict == "PASS"
        assert Limit("cpu", 100.5, 100.0, "µs/req").as_dict()["verdict"] == "MISS"

    def test_ratio_over_zero_baseline_is_zero_not_a_crash(self) -> None:
        ratio = Ratio.of("x/y", ("x", 5.0), ("y", 0.0), target=0.5)
        assert ratio.value == 0.0
        assert ratio.verdict == "MISS"

    def test_spread_and_noise_note(self) -> None:
        assert spread([100.0]) == 0.0
        assert spread([80.0, 100.0, 120.0]) == pytest.approx(0.4)
        assert noise_note("x", [80.0, 100.0, 120.0]) is None
        note = noise_note("x", [50.0, 100.0, 200.0])
        assert note is not None
        assert "x moved by 150%" in note

    def test_interleaved_order(self) -> None:
        assert interleaved(["a", "b", "c"], 2) == [
            (1, "a"),
            (1, "b"),
            (1, "c"),
            (2, "a"),
            (2, "b"),
            (2, "c"),
        ]

    def test_run_interleaved_calls_in_order_and_groups(self) -> None:
        calls: list[tuple[str, int]] = []

        def measure(name: str, run: int) -> str:
            calls.append((name, run))
            return f"{name}{run}"

        grouped = run_interleaved(["x", "y"], 3, measure)
        assert calls == [("x", 1), ("y", 1), ("x", 2), ("y", 2), ("x", 3), ("y", 3)]
        assert grouped == {"x": ["x1", "x2", "x3"], "y": ["y1", "y2", "y3"]}


class TestMeasurement:
    def test_sample_and_errors(self) -> None:
        wrk = _result({202: 900, 500: 4}, {"connect": 1, "read": 0, "write": 0, "status": 4})
        m = Measurement("r1", wrk, server_cpu_s=0.45, expected_statuses=frozenset({202}))
        sample = m.sample()
        assert sample["requests_per_s"] == pytest.approx(452.0)
        assert sample["cpu_us_per_request"] == pytest.approx(0.45e6 / 904)
        assert sample["p99_ms"] == 9.0
        assert m.unexpected == 4
        assert m.errors == 5

    def test_an_expected_non_202_status_is_not_an_error(self) -> None:
        m = Measurement("r1", _result({204: 10}), 0.0, expected_statuses=frozenset({204}))
        assert m.errors == 0
        assert m.as_dict()["statuses"] == {"204": 10}

    def test_no_requests_gives_zero_cpu_per_request(self) -> None:
        m = Measurement("r1", _result({}), 1.0)
        assert m.sample()["cpu_us_per_request"] == 0.0

    @staticmethod
    def _split(*cpu: float) -> Measurement:
        return Measurement("r", _result({204: 10}), sum(cpu), cpu_by_worker={"cascade": cpu})

    def test_a_run_one_worker_served_alone_is_recognised(self) -> None:
        assert self._split(3.37, 0.0).one_worker_served() == "cascade"
        assert self._split(2.9, 0.1).one_worker_served() == "cascade"  # 97%: the others idled
        assert self._split(2.5, 2.8).one_worker_served() is None
        assert self._split(1.0, 1.0, 0.0).one_worker_served() is None  # two of three served
        assert self._split(3.0).one_worker_served() is None  # one worker is the setup
        assert self._split(0.0, 0.0).one_worker_served() is None  # nothing ran

    def test_one_worker_runs_are_set_aside_and_kept_in_the_json(self) -> None:
        attempts = iter([self._split(3.4, 0.0), self._split(0.0, 3.3), self._split(2.6, 2.7)])
        m = measure_all_workers(lambda: next(attempts))
        assert m.cpu_by_worker == {"cascade": (2.6, 2.7)}
        assert [r["cpu_s_by_worker"] for r in m.redone] == [
            {"cascade": [3.4, 0.0]},
            {"cascade": [0.0, 3.3]},
        ]
        assert len(m.as_dict()["redone_one_worker_runs"]) == 2

    def test_the_last_attempt_is_kept_whatever_it_shows(self) -> None:
        calls = []

        def lopsided() -> Measurement:
            calls.append(1)
            return self._split(3.0, 0.0)

        m = measure_all_workers(lopsided, tries=3)
        assert len(calls) == 3
        assert m.one_worker_served() == "cascade"  # still true, and said so in the JSON
        assert len(m.redone) == 2


class TestOutput:
    def test_markdown_table_shape(self) -> None:
        table = markdown_table(["name", "req/s"], [["bare", "5,000"], ["cascade", "4"]])
        lines = table.splitlines()
        assert len(lines) == 4
        assert len({len(line) for line in lines}) == 1  # columns padded to one width
        assert lines[1].replace(" ", "") == "|-------|----:|"
        assert lines[3].endswith("|     4 |")

    def test_source_revision_outside_git_is_unknown(self, tmp_path: Path) -> None:
        assert source_revision(tmp_path) == {"commit": None, "dirty": None}

    def test_source_revision_of_this_checkout(self) -> None:
        revision = source_revision(REPO_ROOT)
        if revision["commit"] is None:
            pytest.skip("not a git checkout (e.g. an sdist)")
        assert len(revision["commit"]) == 40
        assert isinstance(revision["dirty"], bool)

    def test_write_json_leaves_no_temporary_file(self, tmp_path: Path) -> None:
        target = tmp_path / "results" / "x.json"
        write_json(target, {"ratios": [{"value": 0.8}]})
        assert json.loads(target.read_text()) == {"ratios": [{"value": 0.8}]}
        assert [p.name for p in target.parent.iterdir()] == ["x.json"]

    def test_row_result_takes_medians_errors_and_every_run(self) -> None:
        runs = [
            Measurement("r1", _result({204: 10}), 0.001, frozenset({204})),
            Measurement("r2", _result({204: 20, 500: 2}), 0.003, frozenset({204})),
            Measurement("r3", _result({204: 30}), 0.002, frozenset({204})),
        ]
        row = row_result("cascade-w2", "Cascade, 2 workers", 204, runs, workers=2)
        assert row["key"] == "cascade-w2"
        assert row["workers"] == 2
        assert row["median"]["requests_per_s"] == 11.0  # 22 answers in 2 s, the middle run
        assert row["errors"] == 2  # the 500s of run r2
        assert row["one_worker_runs_set_aside"] == 0
        assert [r["run_id"] for r in row["runs"]] == ["r1", "r2", "r3"]
        assert row["spread_requests_per_s"] > 0

    def test_finish_writes_the_json_and_fails_only_on_a_failure(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ok, bad = tmp_path / "ok.json", tmp_path / "bad.json"
        assert finish(ok, {"errors": 0}, 1.0, failed_requests(0)) == 0
        assert finish(bad, {"errors": 3}, 1.0, failed_requests(3)) == 1
        assert json.loads(bad.read_text()) == {"errors": 3}  # written even when it fails
        assert "ERROR: 3 failed requests" in capsys.readouterr().err
        assert ok.exists()


class TestOptions:
    def test_defaults_are_the_full_profile(self) -> None:
        options = parse_options("demo", "d", [])
        assert (options.duration_s, options.runs, options.warmup_s) == (
            FULL.duration_s,
            FULL.runs,
            FULL.warmup_s,
        )
        assert options.runs >= 3  # medians of at least three interleaved runs
        assert (options.connections, options.workers, options.quick) == (16, 2, False)
        assert options.out.name == "demo.json"
        assert options.out.parent.name == "results"

    def test_quick_profile_and_explicit_flags_win(self) -> None:
        quick = parse_options("demo", "d", ["--quick"])
        assert (quick.duration_s, quick.runs) == (QUICK.duration_s, QUICK.runs)
        assert quick.out.name == "demo.quick.json"
        tuned = parse_options(
            "demo", "d", ["--quick", "--duration", "7", "--runs", "5", "--connections", "32"]
        )
        assert (tuned.duration_s, tuned.runs, tuned.connections) == (7.0, 5, 32)

    @pytest.mark.parametrize(
        "argv", [["--duration", "0"], ["--runs", "-1"], ["--connections", "x"], ["--nope"]]
    )
    def test_bad_flags_exit_with_usage(
        self, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exc:
            parse_options("demo", "d", argv)
        assert exc.value.code == 2
        assert "usage:" in capsys.readouterr().err


class TestSubscriberStats:
    def test_counts_duplicates_and_first_delivery_latency(self) -> None:
        stats = RunStats()
        stats.record("r1-1-1", sent_us=1_000, received_us=3_000)
        stats.record("r1-1-2", sent_us=1_500, received_us=2_500)
        stats.record("r1-1-1", sent_us=1_000, received_us=9_000)  # redelivery
        summary = stats.summary()
        assert summary["unique"] == 2
        assert summary["duplicates"] == 1
        assert summary["first_sent_us"] == 1_000
        assert summary["last_received_us"] == 3_000
        latency = summary["latency_ms"]
        assert (latency["p50"], latency["p99"], latency["max"]) == (2.0, 2.0, 2.0)
        assert (latency["p10"], latency["p99_9"]) == (1.0, 2.0)

    def test_keeps_the_percentiles_of_the_distribution(self) -> None:
        stats = RunStats()
        for n in range(1, 1001):  # latencies of 1 ... 1000 ms
            stats.record(f"r1-1-{n}", sent_us=0, received_us=n * 1000)
        latency = stats.summary()["latency_ms"]
        assert list(latency) == ["p10", "p25", "p50", "p75", "p90", "p99", "p99_9", "max"]
        assert latency["p10"] == 101.0
        assert latency["p50"] == 501.0
        assert latency["p99"] == 991.0
        assert latency["p99_9"] == 1000.0
        assert latency["max"] == 1000.0

    def test_empty_run(self) -> None:
        assert set(RunStats().summary()["latency_ms"].values()) == {0.0}


class TestBrokerDelivery:
    @staticmethod
    def _delivery(accepted: int, sent: int, unique: int) -> Delivery:
        return Delivery(
            accepted=accepted,
            sent=sent,
            unique=unique,
            duplicates=0,
            first_sent_us=1_000_000,
            last_received_us=3_000_000,
            latency_ms={"p50": 4.0, "p99": 40.0},
        )

    def test_every_accepted_event_delivered_is_no_loss(self) -> None:
        # 5 requests were still in flight when wrk stopped; the broker delivered 3 of them.
        delivery = self._delivery(accepted=1000, sent=1005, unique=1003)
        assert (delivery.lost, delivery.phantom) == (0, 0)
        assert delivery.delivered_per_s == pytest.approx(501.5)

    def test_shortfall_is_loss(self) -> None:
        assert self._delivery(accepted=1000, sent=1005, unique=990).lost == 10

    def test_more_deliveries_than_sends_is_flagged(self) -> None:
        assert self._delivery(accepted=10, sent=10, unique=12).phantom == 2

    def test_from_subscriber_stats(self) -> None:
        wrk = _result({202: 7, 503: 1})
        stats = {
            "unique": 7,
            "duplicates": 2,
            "first_sent_us": 10,
            "last_received_us": 1_000_010,
            "latency_ms": {"p50": 1.0, "p99": 3.5, "max": 4.0},
        }
        delivery = Delivery.from_stats(wrk, stats)
        metrics = delivery.metrics()
        assert delivery.accepted == 7
        assert metrics["delivered_per_s"] == pytest.approx(7.0)
        assert metrics["delivery_p99_ms"] == 3.5
        assert metrics["delivery_max_ms"] == 4.0  # every kept percentile, for the chart
        assert (metrics["duplicates"], metrics["lost"]) == (2.0, 0.0)

    def test_manifest_has_an_unordered_trigger_to_the_subscriber(self) -> None:
        docs = list(yaml.safe_load_all(manifests(4321)))
        assert [d["kind"] for d in docs] == ["Broker", "Trigger"]
        trigger = docs[1]
        assert trigger["spec"]["broker"] == docs[0]["metadata"]["name"]
        assert trigger["spec"]["subscriber"]["uri"] == "http://127.0.0.1:4321/"
        order = trigger["metadata"]["annotations"]["kafka.eventing.knative.dev/delivery.order"]
        assert order == "unordered"


class TestDeliveryFiles:
    """The Cascade subscriber's per-worker delivery files, read back by the harness."""

    def test_lines_from_several_workers_are_counted_per_run(self, tmp_path: Path) -> None:
        (tmp_path / "101.deliveries").write_bytes(
            delivery_line("ra-1-1", "1000", 3000) + delivery_line("rb-1-1", "1000", 1500)
        )
        (tmp_path / "102.deliveries").write_bytes(
            delivery_line("ra-1-2", "2000", 2500) + delivery_line("ra-1-1", "1000", 9000)
        )
        files = DeliveryFiles(tmp_path)
        stats = files.stats("ra")
        assert (stats["unique"], stats["duplicates"]) == (2, 1)
        assert (stats["first_sent_us"], stats["last_received_us"]) == (1000, 3000)
        assert files.stats("rb")["unique"] == 1
        assert files.stats("rc")["unique"] == 0
        assert files.malformed == 0

    def test_reads_only_what_was_appended_and_waits_for_whole_lines(self, tmp_path: Path) -> None:
        path = tmp_path / "7.deliveries"
        line = delivery_line("rx-1-1", "10", 20)
        path.write_bytes(line[:5])  # a worker is in the middle of its write
        files = DeliveryFiles(tmp_path)
        assert files.stats("rx")["unique"] == 0
        with path.open("ab") as handle:
            handle.write(line[5:] + delivery_line("rx-1-2", None, 30))
        assert files.stats("rx")["unique"] == 2
        assert files.stats("rx")["unique"] == 2  # nothing counted twice on the next poll
        assert files.malformed == 0

    def test_a_line_without_send_time_counts_without_latency(self, tmp_path: Path) -> None:
        (tmp_path / "1.deliveries").write_bytes(delivery_line("ry-1-1", "soon", 50))
        stats = DeliveryFiles(tmp_path).stats("ry")
        assert stats["unique"] == 1
        assert stats["latency_ms"]["p50"] == 0.0

    def test_garbage_is_counted_as_malformed(self, tmp_path: Path) -> None:
        (tmp_path / "1.deliveries").write_bytes(b"not a delivery\n" + b"rz-1-1 1 x\n")
        files = DeliveryFiles(tmp_path)
        assert files.stats("rz")["unique"] == 0
        assert files.malformed == 2

    def test_each_process_has_its_own_file(self, tmp_path: Path) -> None:
        assert worker_file(tmp_path).parent == tmp_path
        assert worker_file(tmp_path).suffix == ".deliveries"


class TestBrokerOptions:
    def test_both_subscribers_by_default_cascade_first(self) -> None:
        options, subscribers, logs = parse_args([])
        assert subscribers == ["cascade", "aiohttp"]
        assert logs == ["nats", "kafka"]  # beside the sqlite row, which always runs
        assert options.out.name == "broker_throughput.json"

    def test_server_logs_are_chosen_with_log(self) -> None:
        assert parse_args(["--log", "kafka"])[2] == ["kafka"]
        assert parse_args(["--log", "kafka", "--log", "nats"])[2] == ["nats", "kafka"]

    def test_one_subscriber_writes_its_own_results_file(self) -> None:
        options, subscribers, _ = parse_args(["--subscriber", "aiohttp", "--quick"])
        assert subscribers == ["aiohttp"]
        assert options.out.name == "broker_throughput.aiohttp.quick.json"
        assert parse_args(["--subscriber", "aiohttp", "--subscriber", "cascade"])[1] == [
            "cascade",
            "aiohttp",
        ]

    def test_unknown_subscriber_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exc:
            parse_args(["--subscriber", "flask"])
        assert exc.value.code == 2
        assert "invalid choice: 'flask'" in capsys.readouterr().err

    def test_row_keys_split_back_into_subscriber_and_kind(self) -> None:
        assert row_key("cascade", "direct").partition("-")[::2] == ("cascade", "direct")


class TestFunctionTargets:
    MEDIANS = {
        "bare-flask": {"requests_per_s": 1000.0, "cpu_us_per_request": 200.0},
        "sdk-otel-flask": {"requests_per_s": 400.0, "cpu_us_per_request": 600.0},
        "cascade": {"requests_per_s": 800.0, "cpu_us_per_request": 250.0},
        "cascade-idempotent": {"requests_per_s": 590.0, "cpu_us_per_request": 360.0},
        "cascade-postgres": {"requests_per_s": 450.0, "cpu_us_per_request": 500.0},
    }

    def test_idempotency_rows_have_targets_against_bare_flask(self) -> None:
        verdicts = {q.name: (round(q.value, 2), q.verdict) for q in _ratios(self.MEDIANS)}
        assert verdicts["cascade-idempotent / (a) bare-flask"] == (0.59, "MISS")
        assert verdicts["cascade-postgres / (a) bare-flask"] == (0.45, "PASS")
        assert verdicts["cascade / (a) bare-flask"] == (0.8, "PASS")

    def test_dedupe_cpu_limit_is_the_difference_to_idempotency_off(self) -> None:
        [limit] = _limits(self.MEDIANS)
        assert (limit.value, limit.limit, limit.verdict) == (110.0, 100.0, "MISS")
        assert _limits({"cascade": self.MEDIANS["cascade"]}) == []

    def test_an_unreachable_postgres_is_a_reason_not_a_crash(self) -> None:
        port = free_port()  # nothing listens there
        why = postgres_reachable(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none")
        assert why is not None
        assert "OperationalError" in why


class TestFunctionPeers:
    """The functions-framework rows: targets, and the same gunicorn setup as every other row."""

    MEDIANS = {
        "bare-flask": {"requests_per_s": 1000.0, "cpu_us_per_request": 200.0},
        "sdk-otel-flask": {"requests_per_s": 400.0, "cpu_us_per_request": 600.0},
        "ff": {"requests_per_s": 810.0, "cpu_us_per_request": 300.0},
        "ff-otel": {"requests_per_s": 520.0, "cpu_us_per_request": 500.0},
        "cascade": {"requests_per_s": 800.0, "cpu_us_per_request": 250.0},
    }

    def test_cascade_against_ff_and_ff_otel(self) -> None:
        verdicts = {q.name: (round(q.value, 2), q.verdict) for q in _ratios(self.MEDIANS)}
        assert verdicts["cascade / (d) ff"] == (0.99, "MISS")  # target >= 1.0x
        assert verdicts["cascade / (e) ff-otel"] == (1.54, "PASS")  # target >= 1.5x
        assert verdicts["CPU: (d) µs/req / cascade µs/req"] == (1.2, "-")
        assert verdicts["CPU: (e) µs/req / cascade µs/req"] == (2.0, "-")

    def test_no_ff_rows_no_ff_ratios(self) -> None:
        medians = {k: v for k, v in self.MEDIANS.items() if not k.startswith("ff")}
        assert not [q for q in _ratios(medians) if "ff" in q.name]

    def test_every_row_runs_the_runtime_gunicorn_setup(self, tmp_path: Path) -> None:
        setup = runtime_gunicorn_setup(3)
        # The preset's worker and pool, not gunicorn's sync worker (one connection per request).
        assert (setup.worker_class, setup.workers, setup.threads) == (
            "gthread",
            3,
            Settings().threads,
        )

        def flag(argv: list[str], name: str) -> str:
            return argv[argv.index(name) + 1]

        specs = baseline_servers(setup) + ff_servers(setup, tmp_path / "python")
        for spec in specs:
            argv = spec.argv_for_port(4321)
            assert flag(argv, "--worker-class") == "gthread", spec.key
            assert (flag(argv, "--workers"), flag(argv, "--threads")) == ("3", str(setup.threads))
        assert {s.key: s.argv_for_port(1)[0] for s in specs}["ff"] == str(tmp_path / "python")
        for spec in cascade_servers(setup, tmp_path, "postgresql://x@127.0.0.1/db"):
            argv = spec.argv_for_port(4321)
            assert (flag(argv, "--workers"), flag(argv, "--threads")) == ("3", str(setup.threads))
        # bench.function_scaling: both series at each worker count on the same preset.
        bare, cascade = (scaling_argv(series, 3, tmp_path)(4321) for series in ("bare-flask", "c"))
        assert flag(bare, "--worker-class") == "gthread"
        for argv in (bare, cascade):
            assert (flag(argv, "--workers"), flag(argv, "--threads")) == ("3", str(setup.threads))

    def test_ff_requirements_pin_our_versions_of_shared_packages(self) -> None:
        assert pinned_version(FF_REQUIREMENTS, "functions-framework") == "3.10.2"
        assert pinned_version(FF_REQUIREMENTS, "cloudevents") == "1.12.0"  # why it has a venv
        for package in ("flask", "werkzeug", "gunicorn", "pydantic", "opentelemetry-sdk"):
            assert pinned_version(FF_REQUIREMENTS, package) == version(package), package
        assert pinned_version(FF_REQUIREMENTS, "opentelemetry-instrumentation-flask") == version(
            "opentelemetry-instrumentation-flask"
        )

    def test_pinned_version_of_an_unpinned_package(self, tmp_path: Path) -> None:
        requirements = tmp_path / "r.txt"
        requirements.write_text("# flask==1\nflask>=2\ngunicorn == 27.0.1  # why\n")
        assert pinned_version(requirements, "flask") == "?"
        assert pinned_version(requirements, "gunicorn") == "27.0.1"

    def test_rows_left_out_with_a_note_when_the_venv_cannot_be_built(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def refuse(*_args: object, **_kwargs: object) -> Path:
            raise VenvUnavailable("pip exited with 1: no network")

        monkeypatch.setattr("bench.function_throughput.ensure_venv", refuse)
        said: list[str] = []
        assert ff_python(said.append) is None
        assert said == [
            "NOTE: no functions-framework rows, their virtualenv cannot be built "
            "(pip exited with 1: no network)"
        ]

    def test_no_ff_takes_no_value(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exc:
            main(["--no-ff=yes"])
        assert exc.value.code == 2
        assert "--no-ff" in capsys.readouterr().err


def _wheel(folder: Path, name: str, version_: str) -> None:
    """A minimal pure-Python wheel of one module ``name`` (VALUE = version), built by hand."""
    dist = f"{name}-{version_}.dist-info"
    files = {
        f"{name}.py": f"VALUE = {version_!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version_}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(folder / f"{name}-{version_}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


class TestVenvBuilder:
    """bench/_venvs.py, offline: a hand-made wheel from a local folder instead of an index."""

    @pytest.fixture
    def wheels(self, tmp_path: Path) -> Path:
        folder = tmp_path / "wheels"
        folder.mkdir()
        _wheel(folder, "bench_probe", "1.0")
        _wheel(folder, "bench_probe", "2.0")
        return folder

    @staticmethod
    def _value(python: Path) -> str:
        argv = [str(python), "-c", "import bench_probe; print(bench_probe.VALUE)"]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    def test_built_once_reused_then_rebuilt_when_the_pins_change(
        self, tmp_path: Path, wheels: Path
    ) -> None:
        requirements = tmp_path / "requirements.txt"
        requirements.write_text("bench_probe==1.0\n")
        venv = tmp_path / "venvs" / "probe"
        offline = ("--no-index", "--find-links", str(wheels))
        said: list[str] = []
        python = ensure_venv(venv, requirements, pip_args=offline, report=said.append)
        assert python == venv_python(venv)
        assert self._value(python) == "1.0"
        assert any(line.startswith("--> building") for line in said)
        assert (venv / STAMP).is_file()

        said.clear()
        (venv / "kept").touch()
        assert ensure_venv(venv, requirements, pip_args=offline, report=said.append) == python
        assert said == []  # reused as it is: no pip, no output
        assert (venv / "kept").exists()

        requirements.write_text("bench_probe==2.0\n")
        ensure_venv(venv, requirements, pip_args=offline, report=said.append)
        assert any("rebuilding" in line for line in said)
        assert not (venv / "kept").exists()
        assert self._value(python) == "2.0"

    def test_a_pin_pip_cannot_satisfy_leaves_no_half_built_venv(
        self, tmp_path: Path, wheels: Path
    ) -> None:
        requirements = tmp_path / "requirements.txt"
        requirements.write_text("bench_probe==9.9\n")
        venv = tmp_path / "probe"
        with pytest.raises(VenvUnavailable, match="pip exited with 1"):
            ensure_venv(
                venv,
                requirements,
                pip_args=("--no-index", "--find-links", str(wheels)),
                report=lambda _line: None,
            )
        assert not venv.exists()

    def test_missing_requirements_file_is_a_reason(self, tmp_path: Path) -> None:
        with pytest.raises(VenvUnavailable, match="cannot read"):
            ensure_venv(tmp_path / "v", tmp_path / "nope.txt", report=lambda _line: None)
        assert not (tmp_path / "v").exists()

    def test_never_deletes_a_folder_that_is_not_a_venv(self, tmp_path: Path) -> None:
        requirements = tmp_path / "requirements.txt"
        requirements.write_text("bench_probe==1.0\n")
        precious = tmp_path / "precious"
        precious.mkdir()
        (precious / "data").write_text("keep me")
        with pytest.raises(VenvUnavailable, match="not a virtualenv"):
            ensure_venv(precious, requirements, report=lambda _line: None)
        assert (precious / "data").read_text() == "keep me"

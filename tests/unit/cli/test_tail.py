"""`cascade tail`: filters over the broker's activity feed, output forms, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cascade.cli import main
from cascade.commands.tail import ActivityFilter
from cascade.runner.display import format_activity
from tests.unit.cli.conftest import FakeServer, Reply


def entry(seq: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "seq": seq,
        "time": "2026-11-26T19:50:02.114Z",
        "namespace": "default",
        "trigger": "inventory-order-created",
        "subscriber": "http://127.0.0.1:8082",
        "type": "com.example.shop.order.created",
        "id": f"e{seq}",
        "source": "/order",
        "partitionkey": "5f0c1a2b-0000-4000-8000-000000000001",
        "attempt": 1,
        "outcome": "delivered",
        "status": 200,
        "error": None,
        "reason": None,
        "latency_ms": 4.1,
        "elapsed_ms": 4.1,
    }
    base.update(fields)
    return base


FEED = [
    entry(1),
    entry(2, trigger="payment-inventory-reserved", type="com.example.shop.inventory.reserved",
          outcome="retried", status=503),
    entry(3, trigger="payment-inventory-reserved", type="com.example.shop.inventory.reserved",
          outcome="dead-lettered", status=503, attempt=6, elapsed_ms=12600.0),
    entry(4, partitionkey="aaaa0000-other", trigger="notification-order-cancelled",
          type="com.example.shop.order.cancelled", status=None, outcome="dropped",
          error="timed out after 30s"),
]  # fmt: skip


def serve_feed(fake: FakeServer, entries: list[dict[str, Any]]) -> None:
    body = b"".join(json.dumps(e).encode() + b"\n" for e in entries) + b"\n"  # + a heartbeat
    fake.route("GET", "/-/activity", Reply(200, {"Content-Type": "application/x-ndjson"}, body))


def tail(*args: str, data_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["tail", "--data-dir", str(data_dir), *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--outcome", "lost"], "'lost' is not one of 'delivered', 'retried'"),
        (["--limit", "-1"], "--limit"),
        (["--limit", "5000"], "--limit"),
        (["--url", "localhost:8080"], "is not an http:// or https:// URL"),
        (["--url", "http://127.0.0.1:70000"], "out of range"),
    ],
)
def test_bad_options_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    code, output = tail(*args, data_dir=tmp_path)
    assert code == 2, output
    assert message in output


def test_an_unreachable_broker_exits_1(tmp_path: Path, closed_port_url: str) -> None:
    code, output = tail("--url", closed_port_url, data_dir=tmp_path)
    assert code == 1
    assert f"cannot read the activity feed of {closed_port_url}" in output


def test_something_that_is_not_a_broker_exits_1(tmp_path: Path, fake: FakeServer) -> None:
    code, output = tail("--url", fake.url, "--no-follow", data_dir=tmp_path)
    assert code == 1
    assert "answered 404" in output
    assert "is this a cascade broker?" in output


def test_lines_show_time_outcome_type_order_trigger_status_latency(
    tmp_path: Path, fake: FakeServer
) -> None:
    serve_feed(fake, FEED)
    code, output = tail("--url", fake.url + "/default/shop", "--no-follow", data_dir=tmp_path)
    assert code == 0, output
    lines = output.splitlines()
    assert len(lines) == 4
    assert lines[0].split()[1:] == [
        "delivered", "order.created", "5f0c1a2b", "inventory-order-created", "200", "4.1", "ms"
    ]  # fmt: skip
    assert "retried #1" in lines[1]
    assert "DEAD-LETTERED" in lines[2]
    assert "after 6 attempts in 12.6 s" in lines[2]
    assert "DROPPED" in lines[3]
    assert "timed out after 30s" in lines[3]
    assert "\x1b[" not in output  # no color when not on a terminal
    [seen] = fake.requests_to("GET", "/-/activity")
    assert "limit=20" in seen.query
    assert "follow" not in seen.query


@pytest.mark.parametrize(
    ("args", "seqs"),
    [
        (["--type", "com.example.shop.inventory."], [2, 3]),
        (["--trigger", "payment-inventory-reserved"], [2, 3]),
        (["--trigger", "default/notification-order-cancelled"], [4]),
        (["--trigger", "other/notification-order-cancelled"], []),
        (["--outcome", "dead-lettered", "--outcome", "dropped"], [3, 4]),
        (["--order", "aaaa"], [4]),
        (["--order", "5f0c1a2b-0000-4000-8000-000000000001"], [1, 2, 3]),
        (["--order", "5f0c1a2b", "--outcome", "retried"], [2]),
    ],
)
def test_filters(args: list[str], seqs: list[int], tmp_path: Path, fake: FakeServer) -> None:
    serve_feed(fake, FEED)
    code, output = tail("--url", fake.url, "--no-follow", "--json", *args, data_dir=tmp_path)
    assert code == 0, output
    assert [json.loads(line)["seq"] for line in output.splitlines()] == seqs


def test_follow_ends_when_the_broker_ends_the_feed(tmp_path: Path, fake: FakeServer) -> None:
    serve_feed(fake, FEED[:1])
    code, output = tail("--url", fake.url, "--limit", "5", data_dir=tmp_path)
    assert code == 0
    assert "inventory-order-created" in output
    assert "the broker ended the feed" in output
    [seen] = fake.requests_to("GET", "/-/activity")
    assert "follow=1" in seen.query
    assert "limit=5" in seen.query


def test_a_broken_feed_line_is_an_error(tmp_path: Path, fake: FakeServer) -> None:
    fake.route("GET", "/-/activity", Reply(200, body=b"{not json\n"))
    code, output = tail("--url", fake.url, "--no-follow", data_dir=tmp_path)
    assert code == 1
    assert "non-JSON line" in output


def test_filter_needs_every_criterion() -> None:
    wanted = ActivityFilter(type_prefix="com.example.shop.order", outcomes=("delivered",))
    assert wanted.matches(FEED[0])
    assert not wanted.matches(FEED[3])  # an order type, but dropped
    assert ActivityFilter().matches({})


def test_outcomes_stand_out_in_color_on_a_terminal() -> None:
    dead = format_activity(FEED[2], color=True)
    assert "\x1b[31m" in dead  # red
    assert "\x1b[1m" in dead  # bold
    assert "\x1b[33m" in format_activity(FEED[1], color=True)  # yellow retry
    assert "\x1b[" not in format_activity(FEED[0], color=False)

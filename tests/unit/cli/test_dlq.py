"""`cascade dlq`: list, show and replay against stand-ins for the dead-letter service, the
subscriber an event failed at, and the broker ingress; and refusals of bad input."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cascade.cli import main
from cascade.dead_letters.client import decode_error_data
from cascade.runner.state import RunState, write_state
from tests.unit.cli.conftest import FakeServer, Reply, Seen

DATA = b'{"order_id": "o-1", "items": [{"sku": "MUG", "quantity": 2}]}'


def dlq(*args: str, data_dir: Path, url: str | None = None) -> tuple[int, str]:
    options = ["--data-dir", str(data_dir), *(["--url", url] if url else [])]
    result = CliRunner().invoke(main, ["dlq", *options, *args])
    return result.exit_code, result.output


def summary(dead_letter_id: int, dest: str | None, replays: int = 0) -> dict[str, Any]:
    return {
        "id": dead_letter_id,
        "type": "com.example.shop.inventory.reserved",
        "source": "/inventory",
        "event_id": f"evt-{dead_letter_id}",
        "order_id": "o-1",
        "partitionkey": "o-1",
        "error_code": "503",
        "reason": "gateway down",
        "dest": dest,
        "replayable": dest is not None,
        "time": "2026-11-26T19:55:47.031Z",
        "last_time": "2026-11-26T19:55:47.031Z",
        "arrivals": 1,
        "replay_count": replays,
        "last_replayed_at": None,
        "order_state": None,
    }


def detail(dead_letter_id: int, dest: str | None, replays: int = 0) -> dict[str, Any]:
    error = {"detail": "injected gateway fault", "status": 503}
    return {
        **summary(dead_letter_id, dest, replays),
        "error_data": {
            "base64": base64.b64encode(json.dumps(error).encode()).decode(),
            "text": json.dumps(error),
            "json": error,
        },
        "event": {
            "attributes": {
                "specversion": "1.0",
                "id": f"evt-{dead_letter_id}",
                "source": "/inventory",
                "type": "com.example.shop.inventory.reserved",
                "partitionkey": "o-1",
                "datacontenttype": "application/json",
                "knativekafkapartition": "3",
            },
            "data": json.loads(DATA),
            "data_base64": base64.b64encode(DATA).decode(),
        },
    }


def as_json(document: object, status: int = 200) -> Reply:
    return Reply(status, {"Content-Type": "application/json"}, json.dumps(document).encode())


def serve_dead_letters(store: FakeServer, *details: dict[str, Any]) -> None:
    store.route(
        "GET",
        "/dead-letters",
        as_json(
            {
                "dead_letters": [
                    summary(d["id"], d["dest"], d["replay_count"])
                    for d in sorted(details, key=lambda d: -d["id"])
                ]
            }
        ),
    )
    for item in details:
        store.route("GET", f"/dead-letters/{item['id']}", as_json(item))
        store.route("POST", f"/dead-letters/{item['id']}/replayed", as_json(summary(
            item["id"], item["dest"], item["replay_count"] + 1)))  # fmt: skip


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "abc"], "'abc' is not a valid integer"),
        (["show", "0"], "0 is not in the range x>=1"),
        (["show"], "Missing argument 'ID'"),
        (["replay"], "give dead letter IDs or --all (not both)"),
        (["replay", "1", "--all"], "give dead letter IDs or --all (not both)"),
        (["replay", "1", "--max-replays", "0"], "--max-replays"),
        (["replay", "x"], "'x' is not a valid integer"),
        (["list", "--limit", "501"], "--limit"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    code, output = dlq(*args, data_dir=tmp_path, url="http://127.0.0.1:9")
    assert code == 2, output
    assert message in output


def test_bad_urls_exit_2(tmp_path: Path) -> None:
    code, output = dlq("list", data_dir=tmp_path, url="dead-letter:8080")
    assert code == 2
    assert "not an absolute http:// or https:// URL" in output
    code, output = dlq("replay", "1", "--broker-url", "nope", data_dir=tmp_path, url="http://x")
    assert code == 2
    assert "--broker-url" in output


def test_without_url_or_a_running_cascade_run_it_says_what_to_do(tmp_path: Path) -> None:
    code, output = dlq("list", data_dir=tmp_path)
    assert code == 2
    assert f"no --url given and no {tmp_path / 'run.json'}" in output


def test_a_run_json_left_by_a_stopped_run_is_not_trusted(tmp_path: Path) -> None:
    gone = 4_194_304 + 4321  # above Linux's largest pid_max: no such process
    write_state(tmp_path, RunState(gone, "t", str(tmp_path), {"url": "http://x"}, {}))
    code, output = dlq("list", data_dir=tmp_path)
    assert code == 2
    assert f"(pid {gone}) has stopped" in output


def test_the_url_comes_from_a_running_cascade_run(tmp_path: Path, fake: FakeServer) -> None:
    serve_dead_letters(fake)
    state = RunState(
        os.getpid(), "t", str(tmp_path), {"url": "http://x"}, {"dead-letter": {"url": fake.url}}
    )
    write_state(tmp_path, state)
    code, output = dlq("list", data_dir=tmp_path)
    assert code == 0, output
    assert output.strip() == "no dead letters"


def test_an_unreachable_service_exits_1(tmp_path: Path, closed_port_url: str) -> None:
    code, output = dlq("list", data_dir=tmp_path, url=closed_port_url)
    assert code == 1
    assert "cannot reach" in output
    assert "is the dead-letter function running?" in output


# --- list and show ----------------------------------------------------------------------


def test_list_shows_code_reason_and_where_it_failed(tmp_path: Path, fake: FakeServer) -> None:
    serve_dead_letters(fake, detail(7, "http://127.0.0.1:8083"), detail(9, None))
    code, output = dlq("list", "--key", "o 1", "--type", "a.b", data_dir=tmp_path, url=fake.url)
    assert code == 0, output
    header, first, second = output.splitlines()
    assert header.split() == ["ID", "TYPE", "KEY", "CODE", "FAILED", "AT", "REPLAYS", "REASON"]
    assert first.split()[:4] == ["9", "inventory.reserved", "o-1", "503"]
    assert second.split()[4] == "http://127.0.0.1:8083"
    assert first.endswith("gateway down")
    [seen] = fake.requests_to("GET", "/dead-letters")
    assert seen.query == "limit=100&partitionkey=o%201&type=a.b"


def test_list_works_with_any_sink_and_no_shop_fields(tmp_path: Path, fake: FakeServer) -> None:
    # A sink that serves only the generic API (no order_id, no order_state): the KEY column is
    # the event's partitionkey, "-" without one.
    bare = {"id": 1, "type": "com.example.any.thing", "partitionkey": None, "error_code": "500",
            "dest": "http://sub/", "replay_count": 0, "reason": None}  # fmt: skip
    fake.route("GET", "/dead-letters", as_json({"dead_letters": [bare]}))
    code, output = dlq("list", data_dir=tmp_path, url=fake.url)
    assert code == 0, output
    assert output.splitlines()[1].split() == ["1", "any.thing", "-", "500", "http://sub/", "0", "-"]


def test_show_lists_the_fields_a_sink_adds(tmp_path: Path, fake: FakeServer) -> None:
    entry = detail(7, "http://127.0.0.1:8083")
    entry["order_state"] = "CONFIRMED"
    fake.route("GET", "/dead-letters/7", as_json(entry))
    code, output = dlq("show", "7", data_dir=tmp_path, url=fake.url)
    assert code == 0, output
    assert "(partitionkey o-1)" in output
    assert "  order_state   CONFIRMED" in output
    assert "  order_id      o-1" in output


def test_show_decodes_the_error_and_prints_the_original_event(
    tmp_path: Path, fake: FakeServer
) -> None:
    serve_dead_letters(fake, detail(7, "http://127.0.0.1:8083"))
    code, output = dlq("show", "7", data_dir=tmp_path, url=fake.url)
    assert code == 0, output
    assert "failed at     http://127.0.0.1:8083" in output
    assert '"detail": "injected gateway fault"' in output
    assert "  id: evt-7" in output
    assert '"sku": "MUG"' in output


def test_show_of_an_unknown_id_exits_1(tmp_path: Path, fake: FakeServer) -> None:
    fake.route("GET", "/dead-letters/3", as_json({"detail": "no dead letter 3"}, 404))
    code, output = dlq("show", "3", data_dir=tmp_path, url=fake.url)
    assert code == 1
    assert "answered 404: no dead letter 3" in output


# --- replay -----------------------------------------------------------------------------


def as_broker_of(broker: FakeServer, *subscribers: str) -> None:
    """``broker`` answers ``GET /-/triggers`` with one Trigger per subscriber: the only places
    a replay may go (tests/hostile/test_replay_destinations.py checks the refusals)."""
    triggers = [
        {"namespace": "default", "name": f"t{n}", "subscriber": url}
        for n, url in enumerate(subscribers)
    ]
    broker.route("GET", "/-/triggers", as_json(triggers))


def reply_with_payment_authorized(seen: Seen) -> Reply:
    return Reply(
        200,
        {
            "ce-specversion": "1.0",
            "ce-id": "reply-1",
            "ce-source": "/payment",
            "ce-type": "com.example.shop.payment.authorized",
            "ce-partitionkey": "o-1",
            "Content-Type": "application/json",
        },
        b'{"order_id": "o-1"}',
    )


def test_replay_posts_the_event_unchanged_and_forwards_the_reply(
    tmp_path: Path, fake: FakeServer, fake2: FakeServer
) -> None:
    store, subscriber_and_broker = fake, fake2
    serve_dead_letters(store, detail(7, subscriber_and_broker.url + "/"))
    as_broker_of(subscriber_and_broker, subscriber_and_broker.url + "/")
    subscriber_and_broker.route("POST", "/", reply_with_payment_authorized)
    subscriber_and_broker.route("POST", "/default/shop", Reply(202))
    code, output = dlq(
        "replay", "7", "--broker-url", subscriber_and_broker.url + "/default/shop",
        data_dir=tmp_path, url=store.url,
    )  # fmt: skip
    assert code == 0, output
    assert "reply payment.authorized reply-1 posted to the broker (202)" in output
    [replayed] = subscriber_and_broker.requests_to("POST", "/")
    assert replayed.headers["ce-id"] == "evt-7"
    assert replayed.headers["ce-source"] == "/inventory"
    assert replayed.headers["ce-type"] == "com.example.shop.inventory.reserved"
    assert replayed.headers["ce-knativekafkapartition"] == "3"
    assert replayed.headers["ce-cascadereplays"] == "1"
    assert replayed.headers["content-type"] == "application/json"
    assert replayed.headers["prefer"] == "reply"
    assert replayed.body == DATA
    [forwarded] = subscriber_and_broker.requests_to("POST", "/default/shop")
    assert forwarded.headers["ce-id"] == "reply-1"
    assert forwarded.headers["ce-type"] == "com.example.shop.payment.authorized"
    assert forwarded.headers["ce-partitionkey"] == "o-1"
    assert forwarded.body == b'{"order_id": "o-1"}'
    assert len(store.requests_to("POST", "/dead-letters/7/replayed")) == 1


def test_replay_without_a_reply_is_done(
    tmp_path: Path, fake: FakeServer, fake2: FakeServer
) -> None:
    serve_dead_letters(fake, detail(7, fake2.url + "/", replays=1))
    as_broker_of(fake2, fake2.url + "/")
    fake2.route("POST", "/", Reply(204))
    code, output = dlq("replay", "7", "--broker-url", fake2.url, data_dir=tmp_path, url=fake.url)
    assert code == 0, output
    assert "answered 204, no reply" in output
    assert fake2.requests_to("POST", "/")[0].headers["ce-cascadereplays"] == "2"


def test_replay_refuses_an_event_replayed_max_times(
    tmp_path: Path, fake: FakeServer, fake2: FakeServer
) -> None:
    serve_dead_letters(fake, detail(7, fake2.url + "/", replays=2))
    as_broker_of(fake2, fake2.url + "/")
    code, output = dlq(
        "replay", "7", "--max-replays", "2", "--broker-url", fake2.url,
        data_dir=tmp_path, url=fake.url,
    )  # fmt: skip
    assert code == 1
    assert "refused, replayed 2 times already (--max-replays 2)" in output
    assert fake2.requests_to("POST", "/") == []
    assert fake.requests_to("POST", "/dead-letters/7/replayed") == []


def test_a_failed_replay_exits_1_and_still_counts(
    tmp_path: Path, fake: FakeServer, fake2: FakeServer
) -> None:
    serve_dead_letters(fake, detail(7, fake2.url + "/"))
    fake2.route("POST", "/", as_json({"detail": "injected gateway fault"}, 503))
    as_broker_of(fake2, fake2.url + "/")
    code, output = dlq("replay", "7", "--broker-url", fake2.url, data_dir=tmp_path, url=fake.url)
    assert code == 1
    assert "answered 503: injected gateway fault" in output
    assert "0 replayed, 1 failed or refused" in output
    assert len(fake.requests_to("POST", "/dead-letters/7/replayed")) == 1


def test_an_entry_without_destination_cannot_be_replayed(tmp_path: Path, fake: FakeServer) -> None:
    serve_dead_letters(fake, detail(4, None))
    code, output = dlq("replay", "4", "--broker-url", fake.url, data_dir=tmp_path, url=fake.url)
    assert code == 1
    assert "no knativeerrordest" in output


def test_dry_run_sends_nothing(tmp_path: Path, fake: FakeServer, fake2: FakeServer) -> None:
    serve_dead_letters(fake, detail(7, fake2.url + "/"))
    as_broker_of(fake2, fake2.url + "/")
    code, output = dlq(
        "replay", "7", "--dry-run", "--broker-url", fake2.url, data_dir=tmp_path, url=fake.url
    )
    assert code == 0, output
    assert f"would POST {fake2.url}/" in output
    assert "ce-cascadereplays: 1" in output
    assert fake2.requests_to("POST", "/") == []
    assert fake.requests_to("POST", "/dead-letters/7/replayed") == []


def test_replay_all_takes_those_with_replays_left_oldest_first(
    tmp_path: Path, fake: FakeServer, fake2: FakeServer
) -> None:
    serve_dead_letters(
        fake,
        detail(3, fake2.url + "/"),
        detail(5, fake2.url + "/", replays=3),
        detail(8, fake2.url + "/"),
        detail(9, None),
    )
    fake2.route("POST", "/", Reply(204))
    as_broker_of(fake2, fake2.url + "/")
    code, output = dlq(
        "replay", "--all", "--broker-url", fake2.url, data_dir=tmp_path, url=fake.url
    )
    assert code == 0, output
    assert "skipping 5: replayed 3 times already" in output
    assert "skipping 9: no knativeerrordest" in output
    assert [s.headers["ce-id"] for s in fake2.requests_to("POST", "/")] == ["evt-3", "evt-8"]
    assert "2 replayed, 0 failed or refused" in output


def test_error_data_is_decoded_from_base64() -> None:
    encoded = base64.b64encode(b'{"status": 503}').decode()
    assert decode_error_data(encoded) == '{\n  "status": 503\n}'
    assert decode_error_data(base64.b64encode(b"plain words").decode()) == "plain words"
    assert decode_error_data("%%%") == "(not valid base64) %%%"


def test_show_decodes_error_data_the_service_did_not(tmp_path: Path, fake: FakeServer) -> None:
    entry = detail(7, "http://127.0.0.1:8083")
    entry["error_data"] = {"base64": base64.b64encode(b"gateway on fire").decode()}
    fake.route("GET", "/dead-letters/7", as_json(entry))
    code, output = dlq("show", "7", data_dir=tmp_path, url=fake.url)
    assert code == 0, output
    assert "error data (knativeerrordata, decoded):\n    gateway on fire" in output

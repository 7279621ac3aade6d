"""`cascade send`: what it posts, what it prints, and how it refuses malformed flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cascade.cli import main
from tests.unit.cli.conftest import FakeServer, Reply


def send(*args: str, data_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["send", "--data-dir", str(data_dir), "--type", "com.example.t", "--source", "/cli", *args],
    )
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{bad"], "--data: not valid JSON"),
        (["--data", "[1, 2"], "not valid JSON"),
        (["--data-file", "/no/such/file.json"], "does not exist"),
        (["--data", "{}", "--data-file", "pyproject.toml"], "give --data or --data-file, not both"),
        (["-e", "region"], "'region': use NAME=VALUE"),
        (["-e", "Region=eu"], "must be 1-20 lowercase letters or digits"),
        (["-e", "a_b=1"], "must be 1-20 lowercase letters or digits"),
        (["-e", "id=7"], "'id' is not an extension (use --id)"),
        (["-e", "datacontenttype=x"], "'datacontenttype' is not an extension"),
        (["-e", "r=1", "-e", "r=2"], "'r' is given twice"),
        (["--url", "ftp://example.com/"], "is not an absolute http:// or https:// URL"),
        (["--url", "http://127.0.0.1:99999/"], "out of range"),
        (["--timeout", "0"], "--timeout"),
    ],
)
def test_malformed_flags_exit_2_naming_the_problem(
    args: list[str], message: str, tmp_path: Path
) -> None:
    extra = [] if "--url" in args else ["--url", "http://127.0.0.1:9/"]
    code, output = send(*args, *extra, data_dir=tmp_path)
    assert code == 2, output
    assert message in output


def test_an_invalid_attribute_is_refused_before_sending(tmp_path: Path, fake: FakeServer) -> None:
    result = CliRunner().invoke(
        main,
        ["send", "--data-dir", str(tmp_path), "--url", fake.url, "--type", "t", "--source", "a b"],
    )
    assert result.exit_code == 2
    assert "not a valid CloudEvent" in result.output
    assert "source" in result.output
    assert fake.seen == []


def test_missing_required_flags_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["send", "--data-dir", str(tmp_path), "--source", "/s"])
    assert result.exit_code == 2
    assert "--type" in result.output


def test_binary_mode_posts_the_event_and_prints_the_answer(
    tmp_path: Path, fake: FakeServer
) -> None:
    fake.route("POST", "/default/shop", Reply(202))
    code, output = send(
        "--url",
        f"{fake.url}/default/shop",
        "--id",
        "evt-1",
        "--subject",
        "o-1",
        "--partitionkey",
        "o-1",
        "-e",
        "region=eu west",
        "--data",
        '{"order_id": "o-1"}',
        data_dir=tmp_path,
    )
    assert code == 0, output
    assert "HTTP 202" in output
    [seen] = fake.requests_to("POST", "/default/shop")
    assert seen.headers["ce-specversion"] == "1.0"
    assert seen.headers["ce-id"] == "evt-1"
    assert seen.headers["ce-type"] == "com.example.t"
    assert seen.headers["ce-source"] == "/cli"
    assert seen.headers["ce-subject"] == "o-1"
    assert seen.headers["ce-partitionkey"] == "o-1"
    assert seen.headers["ce-region"] == "eu%20west"  # percent-encoded (HTTP binding 3.1.3.2)
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == b'{"order_id": "o-1"}'  # the bytes given, untouched


def test_a_new_id_is_made_when_none_is_given(tmp_path: Path, fake: FakeServer) -> None:
    fake.route("POST", "/", Reply(202))
    for _ in range(2):
        assert send("--url", fake.url + "/", data_dir=tmp_path)[0] == 0
    ids = {seen.headers["ce-id"] for seen in fake.seen}
    assert len(ids) == 2
    assert all(len(i) == 36 for i in ids)


def test_structured_mode_sends_one_json_document(tmp_path: Path, fake: FakeServer) -> None:
    fake.route("POST", "/", Reply(202))
    code, output = send(
        "--url", fake.url + "/", "--structured", "--id", "e2", "--data", '{"a": [1]}',
        data_dir=tmp_path,
    )  # fmt: skip
    assert code == 0, output
    [seen] = fake.seen
    assert seen.headers["content-type"].startswith("application/cloudevents+json")
    assert not any(name.startswith("ce-") for name in seen.headers)
    document = json.loads(seen.body)
    assert document == {
        "specversion": "1.0",
        "id": "e2",
        "source": "/cli",
        "type": "com.example.t",
        "datacontenttype": "application/json",
        "data": {"a": [1]},
    }


def test_other_content_types_are_sent_as_they_are(tmp_path: Path, fake: FakeServer) -> None:
    fake.route("POST", "/", Reply(202))
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"\x00\xffnot json")
    code, output = send(
        "--url", fake.url + "/", "--data-file", str(payload),
        "--content-type", "application/octet-stream", data_dir=tmp_path,
    )  # fmt: skip
    assert code == 0, output
    [seen] = fake.seen
    assert seen.body == b"\x00\xffnot json"
    assert seen.headers["content-type"] == "application/octet-stream"


def test_a_non_2xx_answer_exits_1_and_is_shown(tmp_path: Path, fake: FakeServer) -> None:
    fake.route("POST", "/", Reply(400, {"Cascade-Error": "missing required attribute 'id'"}))
    code, output = send("--url", fake.url + "/", data_dir=tmp_path)
    assert code == 1
    assert "HTTP 400" in output
    assert "Cascade-Error: missing required attribute 'id'" in output


def test_a_reply_event_is_printed(tmp_path: Path, fake: FakeServer) -> None:
    fake.route(
        "POST", "/", Reply(200, {"ce-id": "r1", "ce-type": "com.example.reply"}, b'{"ok": true}')
    )
    code, output = send("--url", fake.url + "/", data_dir=tmp_path)
    assert code == 0
    assert "ce-type: com.example.reply" in output
    assert '{"ok": true}' in output


def test_nobody_listening_exits_1(tmp_path: Path, closed_port_url: str) -> None:
    code, output = send("--url", closed_port_url + "/", data_dir=tmp_path)
    assert code == 1
    assert f"cannot reach {closed_port_url}/" in output

"""The outcome table of docs/runtime.md, row by row, through the HTTP app."""

from __future__ import annotations

import io
from types import ModuleType
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from werkzeug.test import EnvironBuilder, run_wsgi_app

from cascade.testing import EventResult, FunctionClient

COMMAND = "com.example.probe.command"


def binary(event_type: str = COMMAND, **overrides: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "/tests",
        "ce-type": event_type,
        "Content-Type": "application/json",
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


def send(client: FunctionClient, data: dict[str, Any], **headers: str | None) -> EventResult:
    return client.post(binary(**headers), orjson.dumps(data))


def effects(client: FunctionClient, probe: ModuleType, key: str = "k") -> int:
    with client.runtime.store.session() as session:
        count = session.scalar(select(probe.Effect.count).where(probe.Effect.key == key))
    return int(count or 0)


def assert_problem(result: EventResult, status: int, *needles: str) -> dict[str, Any]:
    assert result.status == status, result.body
    assert result.headers["Content-Type"] == "application/problem+json"
    problem = result.problem
    assert problem is not None
    assert problem["status"] == status
    for needle in needles:
        assert needle in problem["detail"], problem
    return problem


# --------------------------------------------------------------------------- 2xx


def test_reply_is_200_with_a_binary_cloudevent(client: FunctionClient, probe: ModuleType) -> None:
    result = send(client, {"action": "reply"})
    assert result.status == 200
    attributes = result.attributes
    assert attributes["specversion"] == "1.0"
    assert attributes["type"] == "com.example.probe.done"
    assert attributes["source"] == "/probe"
    assert attributes["id"]
    assert attributes["id"] != "evt-1"
    assert attributes["datacontenttype"] == "application/json"
    assert "time" in attributes
    assert orjson.loads(result.body) == {"key": "k", "effects": 1}
    assert result.reply(probe.Done).effects == 1
    assert effects(client, probe) == 1


def test_no_reply_is_204_with_effects_committed(client: FunctionClient, probe: ModuleType) -> None:
    result = send(client, {"action": "none"})
    assert (result.status, result.body) == (204, b"")
    assert "ce-type" not in result.headers
    assert effects(client, probe) == 1


def test_drop_is_204_and_rolls_back(client: FunctionClient, probe: ModuleType) -> None:
    result = send(client, {"action": "drop"})
    assert (result.status, result.body) == (204, b"")
    assert effects(client, probe) == 0
    assert (
        client.metric(
            "cascade_events_total", {"function": "probe", "type": COMMAND, "outcome": "dropped"}
        )
        == 1
    )


# --------------------------------------------------------------------------- 400 / 413 / 415


def test_not_a_cloudevent_is_400(client: FunctionClient) -> None:
    result = client.post({"Content-Type": "text/plain"}, b"hello")
    assert_problem(result, 400, "not a CloudEvent")


@pytest.mark.parametrize("attribute", ["id", "source", "type", "specversion"])
def test_missing_required_attribute_is_400(client: FunctionClient, attribute: str) -> None:
    result = send(client, {}, **{f"ce-{attribute}": None})
    problem = assert_problem(result, 400, attribute)
    assert problem["attribute"] == attribute


@pytest.mark.parametrize("attribute", ["id", "source", "type"])
def test_empty_required_attribute_is_400(client: FunctionClient, attribute: str) -> None:
    result = send(client, {}, **{f"ce-{attribute}": ""})
    assert_problem(result, 400, f"empty required attribute '{attribute}'")


@pytest.mark.parametrize(
    ("header", "value", "needle"),
    [
        ("ce-time", "yesterday", "'time' is not an RFC 3339"),
        ("ce-time", "2024-02-30T10:00:00Z", "'time'"),
        ("ce-time", "2024-01-01T10:00:00", "'time'"),  # no offset
        ("ce-source", "not a uri", "'source' is not a URI-reference"),
        ("ce-source", "1abc:def", "'source'"),
        ("ce-source", "/a[b]", "'source'"),
        ("ce-specversion", "2.0", "unsupported specversion"),
        ("ce-subject", "", "'subject' must not be empty"),
        ("ce-dataschema", "has space", "'dataschema'"),
    ],
)
def test_invalid_attribute_is_400(
    client: FunctionClient, header: str, value: str, needle: str
) -> None:
    assert_problem(send(client, {}, **{header: value}), 400, needle)


def test_invalid_extension_name_is_400(client: FunctionClient) -> None:
    headers = binary()
    headers["ce-Bad_Name"] = "x"  # becomes "bad_name": "_" is not allowed in names
    assert_problem(client.post(headers, b"{}"), 400, "invalid attribute name 'bad_name'")


def test_batch_is_415(client: FunctionClient) -> None:
    result = client.post({"Content-Type": "application/cloudevents-batch+json"}, b"[]")
    assert_problem(result, 415, "batched")


def test_unknown_event_format_is_415(client: FunctionClient) -> None:
    result = client.post({"Content-Type": "application/cloudevents+avro"}, b"\x00")
    assert_problem(result, 415, "unsupported CloudEvents format")


def test_body_over_limit_is_413(client: FunctionClient) -> None:
    limit = client.settings.max_body_bytes
    result = client.post(binary(), b'{"key":"' + b"x" * limit + b'"}')
    assert_problem(result, 413, str(limit))


def post_chunked(client: FunctionClient, body: bytes) -> tuple[str, dict[str, str], bytes]:
    # No Content-Length: gunicorn de-chunks the body and marks the input as terminated.
    builder = EnvironBuilder("/", method="POST", headers=binary(), input_stream=io.BytesIO(body))
    try:
        environ = builder.get_environ()
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
        chunks, status, headers = run_wsgi_app(client.app, environ, buffered=True)
        return status, dict(headers), b"".join(chunks)
    finally:
        builder.close()


def test_chunked_body_over_limit_is_413(client: FunctionClient) -> None:
    limit = client.settings.max_body_bytes
    status, headers, body = post_chunked(client, b"x" * (limit + 1))
    assert status.startswith("413")
    assert headers["Content-Type"] == "application/problem+json"
    assert b"exceeds" in body


def test_chunked_body_within_limit_is_read_whole(client: FunctionClient, probe: ModuleType) -> None:
    padding = " " * (client.settings.max_body_bytes - 100)  # JSON whitespace, near the limit
    status, _, _ = post_chunked(client, b'{"action": "none",' + padding.encode() + b'"key": "z"}')
    assert status.startswith("204")
    assert effects(client, probe, "z") == 1


def test_body_at_limit_is_accepted(probe: ModuleType, tmp_path: Any) -> None:
    from cascade.settings import Settings

    body = orjson.dumps({"action": "none", "key": "x" * 50})
    with FunctionClient(probe.fn, Settings(data_dir=tmp_path, max_body_bytes=len(body))) as c:
        assert c.post(binary(), body).status == 204
        assert c.post(binary(), body + b" ").status == 413


# --------------------------------------------------------------------------- 422


def test_data_failing_its_model_is_422_with_kne_reason(
    client: FunctionClient, probe: ModuleType
) -> None:
    result = send(client, {"action": "fly"})
    problem = assert_problem(result, 422, "Command", "action")
    assert "Command" in result.headers["Kne-Reason"]
    assert problem["errors"][0]["loc"] == ["action"]
    assert probe.calls == []


def test_data_that_is_not_json_is_422(client: FunctionClient) -> None:
    result = client.post(binary(), b"{not json")
    assert_problem(result, 422, "Command")
    assert result.headers["Kne-Reason"]


def test_unhandled_type_is_422(client: FunctionClient) -> None:
    result = send(client, {}, **{"ce-type": "com.example.probe.unhandled"})
    assert_problem(result, 422, "no handler for event type 'com.example.probe.unhandled'")
    assert "no handler" in result.headers["Kne-Reason"]
    assert (
        client.metric(
            "cascade_events_total", {"function": "probe", "type": "other", "outcome": "dead_letter"}
        )
        == 1
    )


def test_dead_letter_is_422_with_a_header_safe_reason(
    client: FunctionClient, probe: ModuleType
) -> None:
    result = send(client, {"action": "dead"})
    assert_problem(result, 422, "order\nunknown: é")
    assert result.headers["Kne-Reason"] == "order unknown:"  # one printable-ASCII line
    assert effects(client, probe) == 0


# --------------------------------------------------------------------------- 5xx


def test_retry_is_503_with_retry_after_rounded_up(
    client: FunctionClient, probe: ModuleType
) -> None:
    result = send(client, {"action": "retry"})
    assert_problem(result, 503, "downstream busy")
    assert result.headers["Retry-After"] == "3"
    assert effects(client, probe) == 0


def test_retry_without_after_has_no_retry_after(client: FunctionClient) -> None:
    result = send(client, {"action": "retry_no_after"})
    assert result.status == 503
    assert "Retry-After" not in result.headers


@pytest.mark.parametrize("action", ["boom", "bad_return"])
def test_unexpected_error_is_500_without_details(
    client: FunctionClient, probe: ModuleType, action: str
) -> None:
    result = send(client, {"action": action})
    assert_problem(result, 500, "handler failed")
    assert b"secret" not in result.body
    assert b"Traceback" not in result.body
    assert len(result.body) < 300
    assert effects(client, probe) == 0


def test_while_draining_events_get_503_never_4xx(client: FunctionClient) -> None:
    client.runtime.start_draining()
    for headers, body in [(binary(), b"{}"), ({"Content-Type": "text/plain"}, b"junk")]:
        result = client.post(headers, body)
        assert result.status == 503
        assert result.headers["Retry-After"] == "1"
    assert client.get("/health/readiness").status == 503
    assert client.get("/health/liveness").status == 200


# --------------------------------------------------------------------------- other routes


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_root_are_405(client: FunctionClient, method: str) -> None:
    result = client.request(method, "/")
    assert result.status == 405
    assert "POST" in result.headers["Allow"]
    if method != "HEAD":
        assert result.problem is not None
        assert "not allowed" in result.problem["detail"]


@pytest.mark.parametrize("path", ["/events", "/health", "/health/other", "/metrics/x"])
def test_unknown_paths_are_404(client: FunctionClient, path: str) -> None:
    for method in ("GET", "POST"):
        result = client.request(method, path)
        assert result.status == 404
        assert result.problem is not None
        assert path in result.problem["detail"]


@pytest.mark.parametrize("path", ["/health/liveness", "/health/readiness", "/metrics"])
def test_ops_endpoints_refuse_post(client: FunctionClient, path: str) -> None:
    result = client.post({"Content-Type": "application/json"}, b"{}", path=path)
    assert result.status == 405
    assert result.headers["Allow"]


def raw_wsgi(client: FunctionClient, content_length: str, body: bytes) -> tuple[str, bytes]:
    builder = EnvironBuilder("/", method="POST", headers=binary(), input_stream=io.BytesIO(body))
    try:
        environ = builder.get_environ()
        environ["CONTENT_LENGTH"] = content_length
        chunks, status, _ = run_wsgi_app(client.app, environ, buffered=True)
        return status, b"".join(chunks)
    finally:
        builder.close()


@pytest.mark.parametrize("content_length", ["abc", "-5"])
def test_invalid_content_length_is_400(client: FunctionClient, content_length: str) -> None:
    status, body = raw_wsgi(client, content_length, b"{}")
    assert status.startswith("400")
    assert b"invalid Content-Length" in body


def test_body_shorter_than_content_length_is_400(client: FunctionClient) -> None:
    status, body = raw_wsgi(client, "50", b'{"action": "none"}')
    assert status.startswith("400")
    assert b"body ended after 18 of 50 bytes" in body

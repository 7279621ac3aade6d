"""The codec's decisions where the runtime and the broker used to differ, and issue 10's rules."""

from __future__ import annotations

import orjson
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary_event

from cascade.codec import (
    MAX_JSON_DEPTH,
    InvalidEvent,
    binary_headers,
    extension_name_problem,
    is_attribute_name,
    parse_headers,
    parse_wsgi,
    validate_attributes,
)

ATTRIBUTES = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t.x"}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}


def refusal(call: object) -> InvalidEvent:
    assert callable(call)
    with pytest.raises(InvalidEvent) as info:
        call()
    return info.value


# --- Content-Type travels verbatim (HTTP binding §3.1.1; the runtime used to percent-encode it)


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", 'text/plain; charset="utf-8"', "application/x+json"],
)
def test_content_type_is_written_and_read_verbatim(content_type: str) -> None:
    headers = binary_headers({**ATTRIBUTES, "datacontenttype": content_type})
    assert headers["Content-Type"] == content_type
    assert parse_headers(headers, b"").datacontenttype == content_type
    # and the SDK reads it the same (it never percent-decodes Content-Type either)
    sdk = from_binary_event(HTTPMessage(headers, b""))
    assert sdk.get_datacontenttype() == content_type


def test_a_non_ascii_media_type_is_refused() -> None:
    error = refusal(lambda: validate_attributes({**ATTRIBUTES, "datacontenttype": "text/é"}))
    assert error.status == 400
    assert error.attribute == "datacontenttype"


def test_an_empty_content_type_means_none() -> None:
    message = parse_headers(
        {"ce-" + k: v for k, v in ATTRIBUTES.items()} | {"Content-Type": ""}, b""
    )
    assert message.datacontenttype is None


# --- control characters (issue 10 item 3)


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"])
@pytest.mark.parametrize("attribute", ["id", "type", "subject", "myext"])
def test_control_characters_in_values_are_400(char: str, attribute: str) -> None:
    error = refusal(lambda: validate_attributes({**ATTRIBUTES, attribute: f"a{char}b"}))
    assert error.status == 400
    assert error.attribute == attribute
    assert f"U+{ord(char):04X}" in error.detail


def test_control_characters_are_refused_percent_encoded_raw_and_structured() -> None:
    binary = {"ce-" + k: v for k, v in ATTRIBUTES.items()}
    assert refusal(lambda: parse_headers({**binary, "ce-id": "a%00b"}, b"")).attribute == "id"
    environ = {f"HTTP_CE_{k.upper()}": v for k, v in ATTRIBUTES.items()} | {"HTTP_CE_TYPE": "\x07"}
    assert refusal(lambda: parse_wsgi(environ, b"")).attribute == "type"
    body = orjson.dumps({**ATTRIBUTES, "subject": "\u0085"})
    assert refusal(lambda: parse_headers(STRUCTURED, body)).attribute == "subject"


def test_printable_non_ascii_and_space_pass() -> None:
    validate_attributes({**ATTRIBUTES, "subject": "café au lait \u00a0 日本"})


# --- JSON depth (issue 10 item 3): a 400, never an exception from orjson


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300, 2000])
def test_structured_data_nested_too_deep_is_400(depth: int) -> None:
    body = b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":'
    body += b"[" * depth + b"1" + b"]" * depth + b"}"
    error = refusal(lambda: parse_headers(STRUCTURED, body))
    assert error.status == 400


def test_structured_data_at_the_depth_limit_passes() -> None:
    body = orjson.dumps({**ATTRIBUTES, "data": nested(MAX_JSON_DEPTH)})
    assert orjson.loads(parse_headers(STRUCTURED, body).data) == nested(MAX_JSON_DEPTH)


# --- names: one rule to accept, one for what Cascade sends


def test_attribute_names_accepted_on_receipt_may_be_long() -> None:
    assert is_attribute_name("a" * 40)
    validate_attributes({**ATTRIBUTES, "a" * 40: "x"})
    assert not is_attribute_name("my_ext")
    assert not is_attribute_name("")


@pytest.mark.parametrize(
    ("name", "ok"),
    [("a", True), ("x" * 20, True), ("x" * 21, False), ("A", False), ("", False), ("a-b", False)],
)
def test_extension_names_cascade_sends(name: str, ok: bool) -> None:
    assert (extension_name_problem(name) is None) is ok


# --- other decisions


@pytest.mark.parametrize("name", ["subject", "dataschema"])
def test_empty_optional_attributes_are_refused(name: str) -> None:
    assert refusal(lambda: validate_attributes({**ATTRIBUTES, name: ""})).attribute == name


def test_an_empty_extension_is_kept() -> None:
    validate_attributes({**ATTRIBUTES, "myext": ""})


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("application/cloudevents-batch+json", 415), ("application/cloudevents+xml", 415)],
)
def test_batches_and_other_formats_are_415(content_type: str, status: int) -> None:
    assert refusal(lambda: parse_headers({"Content-Type": content_type}, b"[]")).status == status


def test_no_cloudevent_at_all_is_400() -> None:
    error = refusal(lambda: parse_headers({"Content-Type": "application/json"}, b"{}"))
    assert error.status == 400
    assert "ce-specversion" in error.detail


def test_the_first_of_repeated_headers_counts() -> None:
    pairs = [(f"ce-{k}", v) for k, v in ATTRIBUTES.items()] + [("ce-id", "2")]
    assert parse_headers(pairs, b"").id == "1"

"""The CloudEvents HTTP codec on its own: parsing, validation, header encoding."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary_event
from hypothesis import given
from hypothesis import strategies as st

from cascade.codec import (
    CloudEventMessage,
    InvalidEvent,
    binary_headers,
    encode_header_value,
    is_rfc3339,
    is_uri_reference,
    parse_headers,
    parse_wsgi,
)

BASE = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t.x"}
# Attribute values may hold any text but control characters (Cc: U+0000-U+001F, U+007F-U+009F).
VALUE_TEXT = st.characters(blacklist_categories=("Cc", "Cs"))


def parse(headers: dict[str, str], body: bytes = b"") -> CloudEventMessage:
    return parse_headers(headers.items(), body)


def test_binary_attributes_are_lowercased_and_percent_decoded() -> None:
    message = parse_headers(
        [
            ("CE-SpecVersion", "1.0"),
            ("Ce-Id", "a%20b"),
            ("ce-source", "/s"),
            ("ce-type", "t.x"),
            ("ce-subject", "caf%C3%A9"),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        b"{}",
    )
    assert message.attributes == {
        "specversion": "1.0",
        "id": "a b",
        "source": "/s",
        "type": "t.x",
        "subject": "café",
        "datacontenttype": "application/json; charset=utf-8",
    }
    assert message.data == b"{}"
    assert message.mode == "binary"


def test_stray_percent_is_kept_literally() -> None:
    assert parse_headers([*BASE.items(), ("ce-subject", "100%")], b"").subject == "100%"


def test_percent_encoding_of_invalid_utf8_is_400() -> None:
    with pytest.raises(InvalidEvent, match="invalid UTF-8") as info:
        parse_headers([*BASE.items(), ("ce-subject", "%FF")], b"")
    assert info.value.status == 400


def test_wsgi_environ_matches_header_parsing() -> None:
    environ = {
        "HTTP_CE_SPECVERSION": "1.0",
        "HTTP_CE_ID": "1",
        "HTTP_CE_SOURCE": "/s",
        "HTTP_CE_TYPE": "t.x",
        "HTTP_CE_PARTITIONKEY": "p",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRACEPARENT": "ignored",
    }
    message = parse_wsgi(environ, b"{}")
    assert message.attributes["partitionkey"] == "p"
    assert "traceparent" not in message.attributes
    assert message.datacontenttype == "application/json"


def test_binary_ce_datacontenttype_header_is_ignored_in_favour_of_content_type() -> None:
    message = parse({**BASE, "ce-datacontenttype": "text/plain"})
    assert message.datacontenttype is None


def test_specversion_03_binary_is_accepted() -> None:
    message = parse({**BASE, "ce-specversion": "0.3", "ce-schemaurl": "http://x/s"})
    assert message.specversion == "0.3"
    assert message.attributes["schemaurl"] == "http://x/s"


def test_structured_mode_is_normalised_to_wire_strings() -> None:
    body = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "1",
            "source": "/s",
            "type": "t.x",
            "time": "2024-05-01T10:00:00.5+02:00",
            "datacontenttype": "application/json",
            "count": 3,
            "flag": True,
            "empty": None,
            "data": {"a": [1, 2]},
        }
    )
    message = parse({"Content-Type": "application/cloudevents+json; charset=utf-8"}, body)
    assert message.mode == "structured"
    assert message.attributes["count"] == "3"
    assert message.attributes["flag"] == "true"
    assert "empty" not in message.attributes
    assert message.attributes["time"] == "2024-05-01T10:00:00.5+02:00"
    assert orjson.loads(message.data) == {"a": [1, 2]}


def test_structured_data_base64_is_decoded() -> None:
    body = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "1",
            "source": "/s",
            "type": "t.x",
            "data_base64": base64.b64encode(b"\x00\x01").decode(),
        }
    )
    assert parse({"Content-Type": "application/cloudevents+json"}, body).data == b"\x00\x01"


def test_structured_string_data_with_text_content_type_is_raw_text() -> None:
    body = orjson.dumps(
        {
            "specversion": "1.0",
            "id": "1",
            "source": "/s",
            "type": "t.x",
            "datacontenttype": "text/plain",
            "data": "hello",
        }
    )
    assert parse({"Content-Type": "application/cloudevents+json"}, body).data == b"hello"


def test_structured_03_base64_encoding_is_decoded() -> None:
    body = orjson.dumps(
        {
            "specversion": "0.3",
            "id": "1",
            "source": "/s",
            "type": "t.x",
            "datacontentencoding": "base64",
            "data": base64.b64encode(b'{"a":1}').decode(),
        }
    )
    message = parse({"Content-Type": "application/cloudevents+json"}, body)
    assert message.data == b'{"a":1}'
    assert "datacontentencoding" not in message.attributes


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        (b"[1]", "must be a JSON object"),
        (b"{", "not valid JSON"),
        (b'{"specversion":"1.0","id":1,"source":"/s","type":"t"}', "'id' must be a string"),
        (b'{"specversion":"1.0","source":"/s","type":"t"}', "missing required attribute 'id'"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","x":[1]}', "'x' must be"),
        (
            b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}',
            "both",
        ),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"!!"}', "data"),
        (b'{"id":"1","source":"/s","type":"t"}', "'specversion'"),
        (b'{"specversion":"1.0","id":"1","source":"/s","type":"t","ab\\n":"x"}', "name"),
        (b'{"specversion":"1.0","id":"1","source":"/s\\n","type":"t"}', "'source'"),
        (
            b'{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2024-01-01T00:00:00Z\\n"}',
            "'time'",
        ),
    ],
)
def test_structured_errors_are_400(document: bytes, needle: str) -> None:
    with pytest.raises(InvalidEvent, match=needle) as info:
        parse({"Content-Type": "application/cloudevents+json"}, document)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "value",
    [
        "/s",
        "https://example.com/a?b=c#d",
        "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
        "mailto:a@b.c",
        "//host:80/p",
        "http://[::1]:8080/x",
        "a/b:c",
        "%41",
        "?q",
        "#f",
        "k8s://ns/name",
        "/café",  # non-ASCII letters: accepted, as the Kafka broker's java.net.URI does
    ],
)
def test_uri_references_accepted(value: str) -> None:
    assert is_uri_reference(value)


@pytest.mark.parametrize(
    "value",
    ["", "a b", "1a:b", "/x[1]", "http://[zz", "%zz", "a#b#c", "<x>", 'a"b', "a\\b", "/\x85"],
)
def test_uri_references_rejected(value: str) -> None:
    assert not is_uri_reference(value)


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01T00:00:00Z",
        "2024-01-01t00:00:00z",
        "2024-01-01T00:00:00.123456789+05:30",
        "2024-02-29T12:00:00-00:00",
    ],
)
def test_rfc3339_accepted(value: str) -> None:
    assert is_rfc3339(value)


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01",
        "2024-01-01T00:00:00",
        "2023-02-29T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:61Z",
        "2024-12-31T23:59:60Z",  # a leap second: neither SDK (Java, Python) can read it
        "2024-01-01T00:00:00+25:00",
        "2024-01-01 00:00:00Z",
        "tomorrow",
    ],
)
def test_rfc3339_rejected(value: str) -> None:
    assert not is_rfc3339(value)


def test_encode_header_value_only_escapes_what_it_must() -> None:
    assert encode_header_value("/a/b?c=d") == "/a/b?c=d"
    assert encode_header_value('a b"c%d') == "a%20b%22c%25d"
    assert encode_header_value("café") == "caf%C3%A9"


@given(st.text(VALUE_TEXT, min_size=1, max_size=50))
def test_header_values_round_trip(value: str) -> None:
    headers = binary_headers({**{k[3:]: v for k, v in BASE.items()}, "subject": value})
    assert all(c.isascii() and c.isprintable() for c in headers["ce-subject"])
    assert parse_headers(headers.items(), b"").subject == value


@given(st.text(VALUE_TEXT, min_size=1, max_size=40))
def test_sdk_reads_our_binary_headers(value: str) -> None:
    # Interoperability: what we emit, the cloudevents SDK decodes to the same attributes.
    attributes = {k[3:]: v for k, v in BASE.items()} | {"subject": value}
    event = from_binary_event(HTTPMessage(binary_headers(attributes), b""))
    assert event.get_subject() == value


_NAMES = st.sampled_from(
    [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-subject",
        "ce-x",
        "ce-Bad_name",
        "content-type",
        "ce-dataschema",
        "ce-",
        "x-other",
    ]
)


def status_of(headers: dict[str, str], body: bytes) -> int:
    """0 when the request parses, else the HTTP status of the InvalidEvent."""
    try:
        message = parse(headers, body)
    except InvalidEvent as exc:
        return exc.status if exc.detail else -1
    for name in ("id", "source", "type", "specversion"):
        assert message.attributes[name]
    return 0


@given(st.dictionaries(_NAMES, st.text(max_size=30), max_size=8), st.binary(max_size=64))
def test_any_headers_give_a_message_or_a_4xx(headers: dict[str, str], body: bytes) -> None:
    assert status_of(headers, body) in (0, 400, 415)


@given(st.binary(max_size=200))
def test_any_structured_body_gives_a_message_or_a_400(body: bytes) -> None:
    assert status_of({"Content-Type": "application/cloudevents+json"}, body) in (0, 400)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "specversion",
                "id",
                "source",
                "type",
                "time",
                "data",
                "data_base64",
                "subject",
                "datacontentencoding",
                "x",
            ]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=12),
            st.lists(st.integers(), max_size=2),
        ),
    )
)
def test_any_structured_document_gives_a_message_or_a_400(document: dict[str, object]) -> None:
    body = json.dumps(document).encode()  # stdlib: also emits integers beyond 64 bits
    assert status_of({"Content-Type": "application/cloudevents+json"}, body) in (0, 400)

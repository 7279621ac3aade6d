"""Parsing CloudEvents from HTTP and writing binary headers as the broker does (§1.3, §1.4,
§8.1): the broker's adapter over :mod:`cascade.codec`, with aiohttp's header mapping."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from cascade.broker.event import StoredEvent
from cascade.broker.http.event import event_from_http, event_size
from cascade.codec import (
    ContentMode,
    InvalidEvent,
    binary_headers,
    content_mode,
    encode_header_value,
)

BASE = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/src", "ce-type": "t"}


def headers(**extra: str) -> CIMultiDict[str]:
    result = CIMultiDict(BASE)
    for name, value in extra.items():
        result[name.replace("_", "-")] = value
    return result


def structured(document: dict[str, object], content_type: str = "application/cloudevents+json"):
    return event_from_http({"Content-Type": content_type}, orjson.dumps(document))


@pytest.mark.parametrize(
    ("content_type", "mode"),
    [
        (None, ContentMode.BINARY),
        ("application/json", ContentMode.BINARY),
        ("application/cloudevents+json; charset=utf-8", ContentMode.STRUCTURED),
        ("Application/CloudEvents+JSON", ContentMode.STRUCTURED),
        ("application/cloudevents-batch+json", ContentMode.BATCH),
    ],
)
def test_content_mode(content_type: str | None, mode: ContentMode) -> None:
    assert content_mode(content_type) is mode


def test_binary_keeps_body_bytes_and_maps_content_type() -> None:
    body = b'{ "a" :  1 }\n'
    event = event_from_http(headers(Content_Type="application/json", ce_partitionkey="k"), body)
    assert event.data is body or event.data == body
    assert event.attributes == {
        "specversion": "1.0",
        "id": "1",
        "source": "/src",
        "type": "t",
        "partitionkey": "k",
        "datacontenttype": "application/json",
    }


def test_binary_adds_nothing() -> None:
    event = event_from_http(headers(), b"")
    assert set(event.attributes) == {"specversion", "id", "source", "type"}


def test_binary_header_names_are_case_insensitive_and_values_percent_decoded() -> None:
    event = event_from_http(CIMultiDict({**BASE, "CE-Subject": "caf%C3%A9 %25 %22x%22"}), b"")
    assert event.attributes["subject"] == 'café % "x"'


def test_binary_raw_utf8_header_from_surrogate_escapes() -> None:
    raw = "é".encode().decode("utf-8", "surrogateescape")
    assert event_from_http(headers(ce_subject=raw), b"").attributes["subject"] == raw
    with pytest.raises(InvalidEvent, match="not valid UTF-8"):
        event_from_http(headers(ce_subject="\udcff"), b"")


def test_binary_without_specversion_is_not_an_event() -> None:
    with pytest.raises(InvalidEvent, match="ce-specversion"):
        event_from_http({"Content-Type": "application/json"}, b'{"id": "1"}')


@pytest.mark.parametrize("missing", ["ce-id", "ce-source", "ce-type"])
def test_required_attributes(missing: str) -> None:
    hs = headers()
    del hs[missing]
    with pytest.raises(InvalidEvent, match=missing[3:]):
        event_from_http(hs, b"")


@pytest.mark.parametrize("version", ["0.2", "2.0", "1", ""])
def test_unknown_specversion(version: str) -> None:
    with pytest.raises(InvalidEvent, match="specversion"):
        event_from_http(headers(ce_specversion=version), b"")


@pytest.mark.parametrize(
    "source",
    ["a b", "http://x/<y>", "%zz", "1http://x", ":nothing", "x#a#b", "/p[1]", 'q"'],
)
def test_bad_source_uri(source: str) -> None:
    with pytest.raises(InvalidEvent, match="source"):
        event_from_http(headers(ce_source=source.replace("%", "%25")), b"")


@pytest.mark.parametrize(
    "source",
    [
        "/relative/path",
        "urn:uuid:6e8bc430",
        "https://example.com/a?b=c#d",
        "http://[::1]:80/x",
        "ü",
    ],
)
def test_good_source_uri(source: str) -> None:
    event = event_from_http(CIMultiDict({**BASE, "ce-source": source}), b"")
    assert event.attributes["source"] == source


@pytest.mark.parametrize(
    "time",
    [
        "2024-01-01",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-01-01T25:00:00Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00Z",
        "yesterday",
        "2024-01-01T00:00:00+24:00",
    ],
)
def test_bad_time(time: str) -> None:
    with pytest.raises(InvalidEvent, match="time"):
        event_from_http(headers(ce_time=time), b"")


@pytest.mark.parametrize(
    "time",
    ["2024-01-01T00:00:00Z", "2024-01-01t10:20:30.123456789+05:30", "2024-02-29T23:59:59z"],
)
def test_good_time_is_kept_as_sent(time: str) -> None:
    assert event_from_http(headers(ce_time=time), b"").attributes["time"] == time


def test_bad_dataschema_and_extension_name() -> None:
    with pytest.raises(InvalidEvent, match="dataschema"):
        event_from_http(headers(ce_dataschema="not a uri"), b"")
    with pytest.raises(InvalidEvent, match="attribute name"):
        event_from_http(CIMultiDict({**BASE, "ce-my_ext": "x"}), b"")


def test_v03_is_kept_as_03() -> None:
    event = event_from_http(headers(ce_specversion="0.3", ce_schemaurl="http://s"), b"x")
    assert event.attributes["specversion"] == "0.3"
    assert event.attributes["schemaurl"] == "http://s"
    with pytest.raises(InvalidEvent, match="schemaurl"):
        event_from_http(headers(ce_specversion="0.3", ce_schemaurl="a b"), b"")


def test_structured_json_data_becomes_binary() -> None:
    event = structured(
        {
            "specversion": "1.0",
            "id": "1",
            "source": "/s",
            "type": "t",
            "datacontenttype": "application/json",
            "data": {"b": [1, 2], "a": "x"},
            "count": 3,
            "flag": True,
            "gone": None,
        }
    )
    assert orjson.loads(event.data) == {"b": [1, 2], "a": "x"}
    assert event.attributes["datacontenttype"] == "application/json"
    assert event.attributes["count"] == "3"
    assert event.attributes["flag"] == "true"
    assert "gone" not in event.attributes
    assert "time" not in event.attributes


def test_structured_text_and_base64_data() -> None:
    doc = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    text = structured({**doc, "datacontenttype": "text/plain", "data": "hi"})
    assert text.data == b"hi"
    as_json = structured({**doc, "data": "hi"})  # no datacontenttype: JSON
    assert as_json.data == b'"hi"'
    raw = structured({**doc, "data_base64": base64.b64encode(b"\x00\xff").decode()})
    assert raw.data == b"\x00\xff"


def test_structured_03_base64_encoding() -> None:
    event = structured(
        {
            "specversion": "0.3",
            "id": "1",
            "source": "/s",
            "type": "t",
            "datacontentencoding": "base64",
            "data": base64.b64encode(b"raw").decode(),
        }
    )
    assert event.data == b"raw"
    assert event.attributes["specversion"] == "0.3"
    assert "datacontentencoding" not in event.attributes


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"specversion": "1.0", "source": "/s", "type": "t"}', "'id'"),
        (b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "x": 1.5}', "'x'"),
        (b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "x": {}}', "'x'"),
        (
            b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "t",'
            b' "data": 1, "data_base64": "AA=="}',
            "both",
        ),
        (
            b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data_base64": "***"}',
            "base64",
        ),
    ],
)
def test_structured_invalid(body: bytes, message: str) -> None:
    with pytest.raises(InvalidEvent, match=message):
        event_from_http({"Content-Type": "application/cloudevents+json"}, body)


def test_other_structured_formats_and_batches_are_refused() -> None:
    with pytest.raises(InvalidEvent, match="format"):
        event_from_http({"Content-Type": "application/cloudevents+xml"}, b"<x/>")
    with pytest.raises(InvalidEvent, match="batch"):
        event_from_http({"Content-Type": "application/cloudevents-batch+json"}, b"[]")


def test_binary_headers_roundtrip() -> None:
    attributes = {
        "specversion": "1.0",
        "id": "1",
        "source": "/s",
        "type": "t",
        "subject": 'café "quoted" 100% ',
        "datacontenttype": 'text/plain; charset="utf-8"',
    }
    out = binary_headers(attributes)
    assert out["Content-Type"] == 'text/plain; charset="utf-8"'  # verbatim, not percent-encoded
    assert "ce-datacontenttype" not in out
    assert all(
        value.isascii() and " " not in value
        for name, value in out.items()
        if name != "Content-Type"
    )
    back = event_from_http(CIMultiDict(out), b"")
    assert back.attributes == attributes


@given(
    st.dictionaries(
        st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
        st.one_of(st.from_regex(r"[!#$&-~]{0,20}", fullmatch=True), st.text(max_size=20)),
        max_size=8,
    )
)
def test_binary_headers_match_encoding_value_by_value(attributes: dict[str, str]) -> None:
    # The all-plain shortcut and the per-value path must give the same headers.
    expected = {
        ("Content-Type" if name == "datacontenttype" else "ce-" + name): (
            value if name == "datacontenttype" else encode_header_value(value)
        )
        for name, value in attributes.items()
    }
    assert binary_headers(attributes) == expected


def test_encode_leaves_plain_values_alone() -> None:
    assert encode_header_value("com.example.type/v1?x=1") == "com.example.type/v1?x=1"


def test_event_size_counts_attributes_and_data() -> None:
    event = StoredEvent({"id": "é"}, b"12345")
    assert event_size(event) == 5 + len("id") + 3 + 2

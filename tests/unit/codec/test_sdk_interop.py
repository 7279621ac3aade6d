"""The codec against the cloudevents SDK 2.2.0 (``cloudevents.core.bindings.http``), both ways.

- ours → SDK: what :func:`binary_headers` writes, the SDK's ``from_binary`` reads as the same
  attributes and data;
- SDK → ours: what the SDK's ``to_binary`` and ``to_structured`` write, :func:`parse_headers`
  reads as the same attributes and data.

Events are drawn from everything both sides accept: any attribute text without control
characters, URI references with non-ASCII letters, times with microseconds and offsets, media
types with parameters, extensions, JSON and binary data.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings.http import (
    HTTPMessage,
    from_binary,
    to_binary,
    to_structured,
)
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.codec import binary_headers, is_json_content_type, parse_headers

FORMAT = JSONFormat()
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30)
URI_CHARS = string.ascii_letters + string.digits + "-._~:/?@!$&'()*+,;=" + "éüß日"
SEGMENT = st.text(st.sampled_from(string.ascii_letters + string.digits + "-._~éü"), min_size=1)
URI = st.one_of(
    st.builds(lambda p: "/" + p, st.text(st.sampled_from(URI_CHARS.replace("?", "")), max_size=20)),
    st.builds(lambda h, p: f"https://{h}.example/{p}", SEGMENT, SEGMENT),
    st.builds(lambda n: f"urn:cascade:{n}", SEGMENT),
)
OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
TIME = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2999, 12, 31), timezones=OFFSETS
)
MEDIA_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.cascade+json",
        'text/plain; charset="utf-8"',
        "application/octet-stream",
    ]
)
RESERVED = {"specversion", "id", "source", "type", "time", "subject", "datacontenttype",
            "dataschema", "data", "data_base64"}  # fmt: skip
EXTENSIONS = st.dictionaries(
    st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(lambda n: n not in RESERVED),
    TEXT,
    max_size=3,
)
JSON_DATA = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
JSON_OBJECTS = st.dictionaries(st.text(max_size=5), JSON_DATA, max_size=3)
PROPERTIES = settings(max_examples=150, deadline=None)


@st.composite
def events(
    draw: st.DrawFn, *, json_objects_only: bool = False
) -> tuple[dict[str, str], datetime | None, bytes]:
    """Wire-form attributes (time kept aside as a datetime too) and data bytes.

    The SDK writes JSON data only for a dict (``str(data)`` otherwise, e.g. ``False``), so the
    events it writes carry JSON objects only (``json_objects_only``)."""
    attributes = {
        "specversion": "1.0",
        "id": draw(TEXT),
        "source": draw(URI),
        "type": draw(TEXT),
    }
    when = draw(st.none() | TIME)
    if when is not None:
        attributes["time"] = when.isoformat().replace("+00:00", "Z")
    for name, strategy in (("subject", TEXT), ("dataschema", URI)):
        value = draw(st.none() | strategy)
        if value is not None:
            attributes[name] = value
    media_type = draw(MEDIA_TYPES)
    if media_type is not None:
        attributes["datacontenttype"] = media_type
    attributes.update(draw(EXTENSIONS))
    if media_type is None or is_json_content_type(media_type):
        shape = JSON_OBJECTS if json_objects_only else JSON_DATA
        data = orjson.dumps(draw(shape)) if draw(st.booleans()) else b""
    else:
        data = draw(st.binary(max_size=40))
    return attributes, when, data


def sdk_attributes(event: Any, *, had_time: bool) -> dict[str, str]:
    """The SDK event's attributes in wire form (its time is a datetime).

    The SDK fills in ``time`` when an event has none (one reason the codec is not the SDK):
    that invented value is left out when the event ``had_time`` not."""
    result: dict[str, str] = {}
    if not had_time:
        assert isinstance(event.get_time(), datetime)
    for name, value in event.get_attributes().items():
        if value is None or (name == "time" and not had_time):
            continue
        result[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return result


def wire(attributes: dict[str, str], when: datetime | None) -> dict[str, str]:
    """Our attributes with time written as the SDK writes ``isoformat``, for comparison."""
    return attributes | ({"time": when.isoformat()} if when is not None else {})


def data_as_sdk_reads(data: bytes, media_type: str | None) -> object:
    if not data:
        return None
    if is_json_content_type(media_type):
        return orjson.loads(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


@PROPERTIES
@given(events())
def test_the_sdk_reads_what_we_write(event: tuple[dict[str, str], datetime | None, bytes]) -> None:
    attributes, when, data = event
    read = from_binary(HTTPMessage(binary_headers(attributes), data), FORMAT)
    assert sdk_attributes(read, had_time=when is not None) == wire(attributes, when)
    assert read.get_data() == data_as_sdk_reads(data, attributes.get("datacontenttype"))


def sdk_event(attributes: dict[str, str], when: datetime | None, data: bytes) -> CloudEvent:
    typed: dict[str, Any] = dict(attributes)
    if when is not None:
        typed["time"] = when
    payload: object = data_as_sdk_reads(data, attributes.get("datacontenttype"))
    if isinstance(payload, str) and not is_json_content_type(attributes.get("datacontenttype")):
        payload = data  # text data travels as bytes, so the SDK writes it untouched
    return CloudEvent(attributes=typed, data=payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(("write", "mode"), [(to_binary, "binary"), (to_structured, "structured")])
@PROPERTIES
@given(event=events(json_objects_only=True))
def test_we_read_what_the_sdk_writes(
    write: Callable[[CloudEvent, JSONFormat], HTTPMessage],
    mode: str,
    event: tuple[dict[str, str], datetime | None, bytes],
) -> None:
    attributes, when, data = event
    written = sdk_event(attributes, when, data)
    message = write(written, FORMAT)
    parsed = parse_headers(message.headers, message.body)
    assert parsed.mode == mode
    assert wire(dict(parsed.attributes), _time_of(parsed.attributes)) == sdk_attributes(
        written, had_time=True
    )
    assert data_as_sdk_reads(parsed.data, parsed.datacontenttype) == data_as_sdk_reads(
        data, attributes.get("datacontenttype")
    )


def _time_of(attributes: Any) -> datetime | None:
    text = attributes.get("time")
    return None if text is None else datetime.fromisoformat(text)

"""CloudEvents on HTTP as the broker sees them: parse a request or response, write binary headers.

Hand-written rather than the SDK because the broker must store binary input bytes untouched,
keep 0.3 events as 0.3, never invent ``id`` or ``time`` (the SDK 2.x does), and parse on the
hot path of every request. The rules follow the CloudEvents HTTP binding (§3: content modes,
percent-encoded header values) and what the Java SDK used by the Kafka broker rejects (§1.4).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any
from urllib.parse import quote, unquote

import orjson

from cascade.broker.event import StoredEvent

__all__ = [
    "ContentMode",
    "InvalidEvent",
    "binary_attributes",
    "binary_headers",
    "content_mode",
    "encode_header_value",
    "event_from_http",
    "event_size",
    "structured_event",
    "validate_attributes",
]

SPEC_VERSIONS = ("1.0", "0.3")
_REQUIRED = ("id", "source", "type")
_NAME = re.compile(r"[a-z0-9]+")
_NAMES = re.compile(r"[a-z0-9]+(?: [a-z0-9]+)*")
# RFC 3339 date-time; lowercase t/z are allowed by the RFC.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))"
)
# Characters a URI reference may hold (RFC 3986 plus non-ASCII "other" characters, which
# java.net.URI accepts), or a complete percent escape.
_URI_REFERENCE = re.compile(
    r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2}|[^\x00-\x7f\x80-\x9f\s])*"
)
_SCHEME_PREFIX = re.compile(r"([^:/?#]*):")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_AUTHORITY_END = re.compile(r"[/?#]")
# Header values keep printable ASCII except space, '"' and '%' (HTTP binding §3.1.3.2).
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_NEEDS_ENCODING = re.compile(r"[^\x21\x23\x24\x26-\x7e]")


class InvalidEvent(ValueError):
    """The message is not a valid CloudEvent; the text says what is wrong."""


class ContentMode(Enum):
    BINARY = "binary"
    STRUCTURED = "structured"
    BATCH = "batch"


def content_mode(content_type: str | None) -> ContentMode:
    """The content mode a ``Content-Type`` announces (HTTP binding §3)."""
    lowered = (content_type or "").lstrip().lower()
    if lowered.startswith("application/cloudevents-batch"):
        return ContentMode.BATCH
    if lowered.startswith("application/cloudevents"):
        return ContentMode.STRUCTURED
    return ContentMode.BINARY


def event_from_http(headers: Mapping[str, str], body: bytes) -> StoredEvent:
    """Parse a request or response in binary or structured mode; raise InvalidEvent."""
    content_type = headers.get("Content-Type")
    mode = content_mode(content_type)
    if mode is ContentMode.BATCH:
        raise InvalidEvent("batched content mode (application/cloudevents-batch) is not supported")
    if mode is ContentMode.STRUCTURED:
        return structured_event(content_type or "", body)
    return StoredEvent(binary_attributes(headers), body)


def binary_attributes(headers: Mapping[str, str]) -> dict[str, str]:
    """Attributes of a binary-mode message: ``ce-*`` headers plus ``Content-Type``; validated."""
    attributes: dict[str, str] = {}
    content_type: str | None = None
    items: Iterable[tuple[str, str]] = headers.items()
    for name, value in items:
        lowered = name.lower()
        if lowered.startswith("ce-"):
            key = lowered[3:]
            if key not in attributes:  # a repeated header: the first one counts
                attributes[key] = (
                    value  # plain ASCII without escapes: nothing to decode or check
                    if value.isascii() and "%" not in value
                    else _decode_header_value(name, value)
                )
        elif lowered == "content-type" and content_type is None:
            content_type = _header_text(name, value)
    if "specversion" not in attributes:
        raise InvalidEvent("no ce-specversion header: not a CloudEvent in binary mode")
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    validate_attributes(attributes)
    return attributes


def structured_event(content_type: str, body: bytes) -> StoredEvent:
    """Parse ``application/cloudevents+json`` into the stored (binary) form.

    JSON ``data`` is re-serialized compactly; ``data_base64`` (and 0.3's base64
    ``datacontentencoding``) is decoded to raw bytes.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/cloudevents+json":
        raise InvalidEvent(f"unsupported event format {media_type!r}: only JSON is accepted")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"structured event is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidEvent("structured event must be a JSON object")
    data: Any = document.pop("data", None)
    data_base64: Any = document.pop("data_base64", None)
    attributes: dict[str, str] = {}
    for name, value in document.items():
        text = _attribute_text(name, value)
        if text is not None:  # JSON null means "absent"
            attributes[name] = text
    validate_attributes(attributes)
    return StoredEvent(attributes, _structured_data(attributes, data, data_base64))


def validate_attributes(attributes: Mapping[str, str]) -> None:
    """Reject what the Kafka broker's Java SDK rejects: raise InvalidEvent naming the problem."""
    specversion = attributes.get("specversion")
    if specversion not in SPEC_VERSIONS:
        raise InvalidEvent(
            f"unsupported specversion {specversion!r}: accepted are {', '.join(SPEC_VERSIONS)}"
        )
    for name in _REQUIRED:
        if not attributes.get(name):
            raise InvalidEvent(f"required attribute {name!r} is missing or empty")
    names = " ".join(attributes)  # one match for all; a space inside a name adds a separator
    if names.count(" ") != len(attributes) - 1 or not _NAMES.fullmatch(names):
        for name in attributes:
            if not _NAME.fullmatch(name):
                raise InvalidEvent(
                    f"invalid attribute name {name!r}: only lowercase letters and digits are "
                    "allowed"
                )
    _check_uri_reference("source", attributes["source"])
    schema_attribute = "dataschema" if specversion == "1.0" else "schemaurl"
    if schema_attribute in attributes:
        _check_uri_reference(schema_attribute, attributes[schema_attribute])
    if "time" in attributes:
        _check_time(attributes["time"])


def binary_headers(attributes: Mapping[str, str]) -> dict[str, str]:
    """HTTP headers of a binary-mode message: ``ce-*`` per attribute, ``Content-Type``."""
    headers: dict[str, str] = {}
    if not _NEEDS_ENCODING.search("".join(attributes.values())):
        # The usual case, one search for all values: nothing to percent-encode.
        for name, value in attributes.items():
            headers["Content-Type" if name == "datacontenttype" else "ce-" + name] = value
        return headers
    for name, value in attributes.items():
        if name == "datacontenttype":
            headers["Content-Type"] = encode_header_value(value, keep_space=True)
        else:
            headers["ce-" + name] = encode_header_value(value)
    return headers


def encode_header_value(value: str, *, keep_space: bool = False) -> str:
    """Percent-encode what a CloudEvents header value may not carry raw (§3.1.3.2)."""
    if not _NEEDS_ENCODING.search(value):
        return value
    return quote(value, safe=_HEADER_SAFE + (" " if keep_space else ""))


def event_size(event: StoredEvent) -> int:
    """Bytes the event takes as a Kafka record: attribute names and values plus data."""
    size = len(event.data)
    for name, value in event.attributes.items():
        size += len(name) + 3 + len(value.encode("utf-8"))
    return size


def _header_text(name: str, value: str) -> str:
    if value.isascii():
        return value
    # aiohttp hands over undecodable bytes as surrogate escapes: they must be valid UTF-8.
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        raise InvalidEvent(f"header {name!r} is not valid UTF-8") from None


def _decode_header_value(name: str, value: str) -> str:
    text = _header_text(name, value)
    if "%" not in text:
        return text
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise InvalidEvent(f"header {name!r} percent-decodes to invalid UTF-8") from None


def _attribute_text(name: str, value: Any) -> str | None:
    # JSON null means "absent"; CloudEvents types have string, integer and boolean forms.
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise InvalidEvent(
        f"attribute {name!r} must be a string, integer or boolean, got {type(value).__name__}"
    )


def _is_json_media_type(content_type: str | None) -> bool:
    if content_type is None:  # the JSON format treats a missing datacontenttype as JSON
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in ("application/json", "text/json") or media_type.endswith("+json")


def _structured_data(attributes: dict[str, str], data: Any, data_base64: Any) -> bytes:
    if data is not None and data_base64 is not None:
        raise InvalidEvent("an event may carry 'data' or 'data_base64', not both")
    if data_base64 is not None:
        if not isinstance(data_base64, str):
            raise InvalidEvent("'data_base64' must be a string")
        return _base64("data_base64", data_base64)
    if data is None:
        return b""
    encoding = attributes.get("datacontentencoding")
    if attributes["specversion"] == "0.3" and encoding is not None:
        # 0.3 structured mode: base64 data; binary storage carries the raw bytes instead.
        if encoding.lower() != "base64" or not isinstance(data, str):
            raise InvalidEvent(f"unsupported datacontentencoding {encoding!r} for this data")
        del attributes["datacontentencoding"]
        return _base64("data", data)
    if isinstance(data, str) and not _is_json_media_type(attributes.get("datacontenttype")):
        return data.encode("utf-8")
    return orjson.dumps(data)


def _base64(name: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEvent(f"{name!r} is not valid base64") from None


def _check_uri_reference(name: str, value: str) -> None:
    if not _URI_REFERENCE.fullmatch(value) or value.count("#") > 1:
        raise InvalidEvent(f"attribute {name!r} is not a valid URI reference: {value!r}")
    scheme = _SCHEME_PREFIX.match(value)
    if scheme is not None and not _SCHEME.fullmatch(scheme.group(1)):
        raise InvalidEvent(f"attribute {name!r} has an invalid URI scheme: {value!r}")
    # '[' and ']' may only enclose an IP literal in the authority ("//host").
    rest = value[scheme.end() :] if scheme else value
    if rest.startswith("//"):
        authority_end = _AUTHORITY_END.search(rest, 2)
        rest = rest[authority_end.start() :] if authority_end else ""
    if "[" in rest or "]" in rest:
        raise InvalidEvent(f"attribute {name!r} has '[' or ']' outside the host: {value!r}")


def _check_time(value: str) -> None:
    match = _RFC3339.fullmatch(value)
    problem = f"attribute 'time' is not an RFC 3339 timestamp: {value!r}"
    if match is None:
        raise InvalidEvent(problem)
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    try:
        offset = UTC
        if match.group(8):
            hours, minutes = int(match.group(9)), int(match.group(10))
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            offset = timezone(timedelta(hours=hours, minutes=minutes))
        datetime(year, month, day, hour, minute, second, tzinfo=offset)
    except ValueError:
        raise InvalidEvent(problem) from None

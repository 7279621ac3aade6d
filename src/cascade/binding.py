"""CloudEvents HTTP binding: binary and structured mode in, binary mode out.

Binary mode (every broker hop) is parsed by hand from the WSGI environ: a dict walk over
``HTTP_CE_*`` keys costs a few microseconds where the SDK's ``from_http`` costs ~27 µs
(toolchain.md). Structured mode is rare on the hot path, so after our own checks it goes
through the cloudevents SDK (``from_structured``), which decodes ``data_base64`` and 0.3
``datacontentencoding`` and validates attribute names and types.

All attributes are kept in their wire form: strings keyed by lowercase name, exactly as they
would appear (percent-decoded) in ``ce-*`` headers. Nothing is invented: the SDK's habit of
filling in a missing ``id`` or ``time`` is prevented by checking required attributes first.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import quote, unquote

import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.common import get_event_factory_for_version
from cloudevents.core.bindings.http import HTTPMessage, from_structured
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat

from cascade.attribute_view import AttributeView

__all__ = [
    "BATCH_CONTENT_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "BindingError",
    "CloudEventMessage",
    "binary_headers",
    "encode_header_value",
    "is_json_content_type",
    "is_uri_reference",
    "is_rfc3339",
    "parse_headers",
    "parse_wsgi",
]

SPEC_VERSIONS: Final = ("1.0", "0.3")
REQUIRED: Final = ("id", "source", "type")
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
# Optional attributes the spec says MUST be non-empty when present.
_NON_EMPTY_OPTIONAL: Final = frozenset({"subject", "datacontenttype", "dataschema", "schemaurl"})
_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]+\Z")
_JSON_CONTENT_TYPE = re.compile(r"^(?:application|text)/(?:[a-z0-9.\-]+\+)?json\Z", re.IGNORECASE)

Mode = Literal["binary", "structured"]


class BindingError(Exception):
    """The request is not an acceptable CloudEvent; carries the HTTP status to answer."""

    def __init__(self, status: int, detail: str, *, attribute: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.attribute = attribute


@dataclass(frozen=True, slots=True)
class CloudEventMessage(AttributeView):
    """A parsed, validated CloudEvent: wire-form attributes and the raw data bytes."""

    attributes: Mapping[str, str]
    data: bytes
    mode: Mode = "binary"

    @property
    def datacontenttype(self) -> str | None:
        return self.attributes.get("datacontenttype")


# --------------------------------------------------------------------------- parsing


def parse_wsgi(environ: Mapping[str, Any], body: bytes) -> CloudEventMessage:
    """Parse a request from its WSGI environ (the fast path used by the app)."""
    ce: dict[str, str] = {}
    for key, value in environ.items():
        # WSGI spells header "ce-foo" as HTTP_CE_FOO; attribute names are [a-z0-9] only, so a
        # name that had "_" or "-" in it is invalid either way and is caught by validation.
        if key[:8] == "HTTP_CE_":
            name = key[8:].lower()
            ce[name] = value if value.isascii() and "%" not in value else _decode(name, value)
    return _parse(ce, environ.get("CONTENT_TYPE") or None, body)


def parse_headers(headers: Iterable[tuple[str, str]], body: bytes) -> CloudEventMessage:
    """Parse from (name, value) header pairs; names are case-insensitive."""
    ce: dict[str, str] = {}
    content_type: str | None = None
    for name, value in headers:
        lower = name.lower()
        if lower.startswith("ce-"):
            ce[lower[3:]] = _decode(lower[3:], value)
        elif lower == "content-type":
            content_type = value or None
    return _parse(ce, content_type, body)


def _decode(name: str, value: str) -> str:
    if not value.isascii():
        # WSGI hands us latin-1; the binding requires percent-encoding, but be lenient with
        # raw UTF-8 rather than mangle it.
        try:
            value = value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise BindingError(
                400, f"header ce-{name} is not valid UTF-8", attribute=name
            ) from None
    if "%" in value and _valid_percent(value):
        # A stray "%" that starts no escape is taken literally rather than rejected.
        try:
            value = unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise BindingError(
                400, f"header ce-{name} percent-decodes to invalid UTF-8", attribute=name
            ) from None
    return value


def _valid_percent(value: str) -> bool:
    return _BAD_PERCENT.search(value) is None


_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _media_type(content_type: str | None) -> str:
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def _parse(ce: dict[str, str], content_type: str | None, body: bytes) -> CloudEventMessage:
    media = _media_type(content_type)
    if media == BATCH_CONTENT_TYPE:
        raise BindingError(
            415,
            "batched CloudEvents (application/cloudevents-batch+json) "
            "are not supported; send one event per request",
        )
    if media.startswith("application/cloudevents+"):
        if media != STRUCTURED_CONTENT_TYPE:
            raise BindingError(
                415,
                f"unsupported CloudEvents format {media!r}; only "
                f"{STRUCTURED_CONTENT_TYPE} is supported",
            )
        return _parse_structured(body)
    if not ce:
        raise BindingError(
            400,
            "not a CloudEvent: no ce-* headers (binary mode) and the content type is not "
            f"{STRUCTURED_CONTENT_TYPE} (structured mode)",
        )
    if content_type:
        ce["datacontenttype"] = content_type
    else:
        ce.pop("datacontenttype", None)  # binary mode carries it in Content-Type only
    _validate(ce)
    return CloudEventMessage(ce, body, "binary")


def _parse_structured(body: bytes) -> CloudEventMessage:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BindingError(400, f"structured CloudEvent is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BindingError(400, "structured CloudEvent must be a JSON object")
    attributes: dict[str, str] = {}
    for name, value in document.items():
        if name in ("data", "data_base64") or value is None:
            continue
        if isinstance(value, bool):
            attributes[name] = "true" if value else "false"
        elif isinstance(value, int | str):
            if name in ("specversion", *REQUIRED) and not isinstance(value, str):
                raise BindingError(400, f"attribute {name!r} must be a string", attribute=name)
            attributes[name] = str(value)
        else:
            raise BindingError(
                400,
                f"attribute {name!r} must be a string, integer or boolean, "
                f"got {type(value).__name__}",
                attribute=name,
            )
    if "data" in document and "data_base64" in document:
        raise BindingError(400, "structured CloudEvent has both 'data' and 'data_base64'")
    _validate(attributes)
    _check_base64(document, attributes)
    event = _sdk_event(body, attributes["specversion"])
    if attributes.get("specversion") == "0.3":
        attributes.pop("datacontentencoding", None)  # a body encoding, consumed here
    data = _data_bytes(event.get_data(), attributes.get("datacontenttype"))
    return CloudEventMessage(attributes, data, "structured")


def _check_base64(document: dict[str, Any], attributes: Mapping[str, str]) -> None:
    # The SDK decodes leniently (invalid characters are skipped): check strictly first so
    # malformed data is refused rather than silently altered.
    if "data_base64" in document:
        encoded, where = document["data_base64"], "data_base64"
    elif attributes.get("datacontentencoding", "").lower() == "base64":
        encoded, where = document.get("data"), "data (datacontentencoding base64)"
    else:
        return
    if encoded is None:
        return
    try:
        if not isinstance(encoded, str):
            raise ValueError("not a string")
        base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise BindingError(400, f"invalid CloudEvent data: {where} is not base64 ({exc})") from None


def _sdk_event(body: bytes, specversion: str) -> BaseCloudEvent:
    factory = get_event_factory_for_version(specversion)
    try:
        return from_structured(HTTPMessage({}, body), _JSON_FORMAT, factory)
    except BaseCloudEventException as exc:
        raise BindingError(400, f"invalid CloudEvent: {exc}") from None
    except (ValueError, TypeError) as exc:  # bad base64, bad data encoding
        raise BindingError(400, f"invalid CloudEvent data: {exc}") from None


_JSON_FORMAT: Final = JSONFormat()


def _data_bytes(data: object, datacontenttype: str | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str) and not is_json_content_type(datacontenttype):
        return data.encode("utf-8")
    return orjson.dumps(data)


def is_json_content_type(content_type: str | None) -> bool:
    """True for absent (JSON is the default), ``application/json``, ``*/*+json`` and the like."""
    media = _media_type(content_type)
    return not media or _JSON_CONTENT_TYPE.match(media) is not None


# --------------------------------------------------------------------------- validation


# Names seen valid before: most requests carry the same few extensions, so the regex runs
# once per name rather than once per request. Bounded, so odd senders cannot grow it.
_KNOWN_NAMES: set[str] = {
    "specversion", "id", "source", "type", "time", "subject", "datacontenttype",
    "dataschema", "schemaurl", "datacontentencoding", "partitionkey", "traceparent",
    "tracestate",
}  # fmt: skip
_KNOWN_NAMES_MAX = 512
_VALID_SOURCES: set[str] = set()
_VALID_SOURCES_MAX = 4096


def _validate(attributes: dict[str, str]) -> None:
    specversion = attributes.get("specversion")
    if specversion is None:
        raise BindingError(400, "missing required attribute 'specversion'", attribute="specversion")
    if specversion not in SPEC_VERSIONS:
        raise BindingError(
            400,
            f"unsupported specversion {specversion!r}; supported: 1.0, 0.3",
            attribute="specversion",
        )
    for name in REQUIRED:
        if not attributes.get(name):
            state = "missing" if name not in attributes else "empty"
            raise BindingError(400, f"{state} required attribute {name!r}", attribute=name)
    for name, value in attributes.items():
        if name not in _KNOWN_NAMES:
            if not _ATTRIBUTE_NAME.match(name):
                raise BindingError(
                    400,
                    f"invalid attribute name {name!r}: only lowercase letters a-z and digits",
                    attribute=name,
                )
            if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
                _KNOWN_NAMES.add(name)
        if not value and name in _NON_EMPTY_OPTIONAL:
            raise BindingError(400, f"attribute {name!r} must not be empty", attribute=name)
    source = attributes["source"]
    if source not in _VALID_SOURCES:
        if not is_uri_reference(source):
            raise BindingError(
                400,
                f"attribute 'source' is not a URI-reference (RFC 3986): {source!r}",
                attribute="source",
            )
        if len(_VALID_SOURCES) >= _VALID_SOURCES_MAX:
            _VALID_SOURCES.clear()
        _VALID_SOURCES.add(source)
    time = attributes.get("time")
    if time is not None and not is_rfc3339(time):
        raise BindingError(
            400, f"attribute 'time' is not an RFC 3339 timestamp: {time!r}", attribute="time"
        )
    for name in ("dataschema", "schemaurl"):
        schema = attributes.get(name)
        if schema is not None and not is_uri_reference(schema):
            raise BindingError(
                400, f"attribute {name!r} is not a URI-reference: {schema!r}", attribute=name
            )


# Field ranges in the pattern; only days 29-31 need the calendar (leap years, short months).
_RFC3339 = re.compile(
    r"(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)


def is_rfc3339(value: str) -> bool:
    """RFC 3339 ``date-time`` (with a mandatory offset), range-checked."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        return False
    day = int(match.group(3))
    if day > 28:
        try:
            datetime(int(match.group(1)), int(match.group(2)), day)
        except ValueError:
            return False
    return True


# RFC 3986 characters: unreserved, reserved (gen-delims + sub-delims) and "%" (checked below).
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*\Z")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_AUTHORITY = re.compile(r"^//([^/?#]*)")
_IP_LITERAL_HOST = re.compile(r"^(?:[^@]*@)?\[[0-9A-Fa-f:.vV\-._~!$&'()*+,;=]+\](?::\d*)?\Z")


def is_uri_reference(value: str) -> bool:
    """True when ``value`` is a syntactically valid, non-empty RFC 3986 URI-reference."""
    if not value or not _URI_CHARS.match(value) or not _valid_percent(value):
        return False
    if value.count("#") > 1:
        return False
    scheme = _SCHEME.match(value)
    rest = value[scheme.end() :] if scheme else value
    if scheme is None:
        # relative-ref: a first segment containing ":" would read as a scheme.
        first_segment = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if ":" in first_segment:
            return False
    authority = _AUTHORITY.match(rest)
    tail = rest
    if authority is not None:
        host = authority.group(1)
        if "[" in host or "]" in host:
            if not _IP_LITERAL_HOST.match(host):
                return False
        elif host.count("@") > 1:
            return False
        tail = rest[authority.end() :]
    # "[" and "]" are only legal inside an IP-literal host.
    return "[" not in tail and "]" not in tail


# --------------------------------------------------------------------------- writing

# HTTP binding §3.1.3.2: printable ASCII except space, '"' and '%' travels as is.
_NEEDS_ENCODING = re.compile(r"[^\x21\x23\x24\x26-\x7e]")
_SAFE: Final = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ('"', "%"))


def encode_header_value(value: str) -> str:
    """Percent-encode an attribute value for a ``ce-*`` header (fast path when already safe)."""
    if _NEEDS_ENCODING.search(value) is None:
        return value
    return quote(value, safe=_SAFE)


def binary_headers(attributes: Mapping[str, str]) -> dict[str, str]:
    """Binary-mode headers for wire-form ``attributes``; ``datacontenttype`` → Content-Type."""
    headers: dict[str, str] = {}
    for name, value in attributes.items():
        if name == "datacontenttype":
            headers["Content-Type"] = value
        else:
            headers[f"ce-{name}"] = encode_header_value(value)
    return headers

"""CloudEvents context attributes: the naming rule and the checks every received event passes.

Attributes are kept in their wire form (strings keyed by lowercase name, percent-decoded), so a
check never needs the SDK's typed objects. Where the spec leaves room, the rule is what the
Kafka broker's Java SDK and the Python SDK both accept, so an event that passes here also passes
there (a leap second ``:60`` is refused for that reason, non-ASCII in ``source`` is accepted).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Final

__all__ = [
    "EXTENSION_NAME_MAX",
    "REQUIRED",
    "SPEC_VERSIONS",
    "InvalidEvent",
    "extension_name_problem",
    "is_attribute_name",
    "is_rfc3339",
    "is_uri_reference",
    "validate_attributes",
]

SPEC_VERSIONS: Final = ("1.0", "0.3")
REQUIRED: Final = ("id", "source", "type")
# The spec: names SHOULD NOT exceed 20 characters. Receivers accept longer ones; what Cascade
# itself produces keeps to it.
EXTENSION_NAME_MAX: Final = 20
# Optional attributes the spec says MUST be non-empty when present.
_NON_EMPTY_OPTIONAL: Final = ("subject", "datacontenttype", "dataschema", "schemaurl")

_NAME = re.compile(r"[a-z0-9]+")
# C0 controls, DEL and C1 controls: never part of an attribute value (issue 10), they break
# terminals, logs and stores downstream.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Field ranges in the pattern; only days 29-31 need the calendar (leap years, short months).
_RFC3339 = re.compile(
    r"(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)
# Characters a URI reference may hold: RFC 3986's, a complete percent escape, or a non-ASCII
# character that is neither a C1 control nor white space (java.net.URI accepts those).
_URI_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2}|[^\x00-\x9f\s])*")
_SCHEME_PREFIX = re.compile(r"([^:/?#]*):")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_AUTHORITY_END = re.compile(r"[/?#]")
_IP_LITERAL_HOST = re.compile(r"(?:[^@]*@)?\[[0-9A-Fa-f:.vV\-_~!$&'()*+,;=]+\](?::\d*)?")


# Names and sources seen valid before: most events carry the same few, so the regular
# expressions run once per name or source rather than once per event. Bounded, so odd senders
# cannot grow them.
_KNOWN_NAMES: set[str] = {
    "specversion", "id", "source", "type", "time", "subject", "datacontenttype",
    "dataschema", "schemaurl", "partitionkey", "traceparent", "tracestate",
}  # fmt: skip
_KNOWN_NAMES_MAX: Final = 512
_VALID_SOURCES: set[str] = set()
_VALID_SOURCES_MAX: Final = 4096


class InvalidEvent(ValueError):
    """Not an acceptable CloudEvent. ``status`` is the HTTP answer a receiver gives (400, or 415
    for a content mode or format it does not take); ``attribute`` names the culprit if one is."""

    def __init__(self, detail: str, *, status: int = 400, attribute: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.attribute = attribute


def is_attribute_name(name: str) -> bool:
    """The CloudEvents naming rule every receiver applies: lowercase ``a-z`` and ``0-9`` only."""
    return _NAME.fullmatch(name) is not None


def extension_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an extension Cascade sends, or None (1-20 of ``a-z0-9``)."""
    if len(name) > EXTENSION_NAME_MAX or not is_attribute_name(name):
        return f"must be 1-{EXTENSION_NAME_MAX} lowercase letters or digits"
    return None


def validate_attributes(attributes: Mapping[str, str]) -> None:
    """Raise :class:`InvalidEvent` (400) naming the first problem of wire-form ``attributes``."""
    specversion = attributes.get("specversion")
    if specversion is None:
        raise InvalidEvent("missing required attribute 'specversion'", attribute="specversion")
    if specversion not in SPEC_VERSIONS:
        raise InvalidEvent(
            f"unsupported specversion {specversion!r}; supported: {', '.join(SPEC_VERSIONS)}",
            attribute="specversion",
        )
    for name in REQUIRED:
        if not attributes.get(name):
            state = "missing" if name not in attributes else "empty"
            raise InvalidEvent(f"{state} required attribute {name!r}", attribute=name)
    if not _KNOWN_NAMES.issuperset(attributes):
        _check_names(attributes)
    values = "".join(attributes.values())
    if not values.isascii():
        _check_text(attributes)
    elif not values.isprintable():  # ASCII and printable: no control character
        _refuse_control_character(attributes)
    if "" in attributes.values():
        for name in _NON_EMPTY_OPTIONAL:
            if attributes.get(name) == "":
                raise InvalidEvent(f"attribute {name!r} must not be empty", attribute=name)
    source = attributes["source"]
    if source not in _VALID_SOURCES:
        if not is_uri_reference(source):
            raise InvalidEvent(
                f"attribute 'source' is not a URI-reference (RFC 3986): {source!r}",
                attribute="source",
            )
        if len(_VALID_SOURCES) >= _VALID_SOURCES_MAX:
            _VALID_SOURCES.clear()
        _VALID_SOURCES.add(source)
    for name in ("dataschema", "schemaurl"):
        schema = attributes.get(name)
        if schema is not None and not is_uri_reference(schema):
            raise InvalidEvent(
                f"attribute {name!r} is not a URI-reference: {schema!r}", attribute=name
            )
    time = attributes.get("time")
    if time is not None and not is_rfc3339(time):
        raise InvalidEvent(
            f"attribute 'time' is not an RFC 3339 timestamp: {time!r}", attribute="time"
        )


def _check_names(attributes: Mapping[str, str]) -> None:
    for name in attributes:
        if name not in _KNOWN_NAMES:
            if not is_attribute_name(name):
                raise InvalidEvent(
                    f"invalid attribute name {name!r}: only lowercase letters a-z and digits",
                    attribute=name,
                )
            if len(_KNOWN_NAMES) < _KNOWN_NAMES_MAX:
                _KNOWN_NAMES.add(name)


def _check_text(attributes: Mapping[str, str]) -> None:
    """The checks only non-ASCII values need: C1 controls, a non-ASCII media type."""
    _refuse_control_character(attributes)
    content_type = attributes.get("datacontenttype")
    if content_type is not None and not content_type.isascii():
        # It travels as the Content-Type header, verbatim: an RFC 2046 media type is ASCII.
        raise InvalidEvent(
            f"attribute 'datacontenttype' is not an ASCII media type: {content_type!r}",
            attribute="datacontenttype",
        )


def _refuse_control_character(attributes: Mapping[str, str]) -> None:
    for name, value in attributes.items():
        found = _CONTROL.search(value)
        if found is not None:
            raise InvalidEvent(
                f"attribute {name!r} contains the control character U+{ord(found.group()):04X}",
                attribute=name,
            )


def is_rfc3339(value: str) -> bool:
    """RFC 3339 ``date-time`` with a mandatory offset, range-checked (no leap second)."""
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


def is_uri_reference(value: str) -> bool:
    """True for a non-empty RFC 3986 URI-reference (non-ASCII letters allowed, as Java's URI)."""
    if not value or not _URI_CHARS.fullmatch(value) or value.count("#") > 1:
        return False
    scheme = _SCHEME_PREFIX.match(value)
    if scheme is not None and not _SCHEME.fullmatch(scheme.group(1)):
        return False  # "1a:b", ":x": a first segment with ":" that is no scheme
    rest = value[scheme.end() :] if scheme else value
    if rest.startswith("//"):
        end = _AUTHORITY_END.search(rest, 2)
        host = rest[2 : end.start()] if end else rest[2:]
        if ("[" in host or "]" in host) and not _IP_LITERAL_HOST.fullmatch(host):
            return False
        rest = rest[end.start() :] if end else ""
    # "[" and "]" are only legal around an IP-literal host.
    return "[" not in rest and "]" not in rest

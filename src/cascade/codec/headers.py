"""Binary content mode: ``ce-*`` headers in and out (CloudEvents HTTP binding §3.1).

- Out: every attribute but ``datacontenttype`` becomes ``ce-<name>``, percent-encoded where
  §3.1.3.2 says so (anything but printable ASCII, space, ``"`` and ``%``). ``datacontenttype``
  becomes ``Content-Type`` verbatim: it is an HTTP header with its own syntax (RFC 9110), the
  binding's percent-encoding does not apply to it, and the SDKs write and read it as is.
- In: header names are case-insensitive; the first of repeated headers counts; values are
  percent-decoded (a ``%`` that starts no escape is taken literally); ``Content-Type`` is the
  ``datacontenttype`` (as is; non-ASCII is refused) and a ``ce-datacontenttype`` header is
  ignored; an empty ``Content-Type`` means none.

HTTP servers hand header bytes over as ``str`` in one of two ways (``Wire``): ``"latin-1"``
(WSGI, ``http.client``: one character per byte) or ``"utf-8"`` (aiohttp and the broker's
client: UTF-8, undecodable bytes as surrogate escapes; also right for ordinary Python strings).
Raw UTF-8 is accepted although the binding asks for percent-encoding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import quote, unquote

from cascade.codec.attributes import InvalidEvent, validate_attributes

__all__ = [
    "Wire",
    "binary_attributes",
    "binary_headers",
    "decode_header_value",
    "encode_header_value",
    "wsgi_binary_attributes",
]

Wire = Literal["latin-1", "utf-8"]

# Printable ASCII but space, '"' and '%' travels as is (§3.1.3.2).
_NEEDS_ENCODING = re.compile(r"[^\x21\x23\x24\x26-\x7e]")
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def encode_header_value(value: str) -> str:
    """Percent-encode a ``ce-*`` header value where §3.1.3.2 requires (fast when nothing to do)."""
    if not _NEEDS_ENCODING.search(value):
        return value
    return quote(value, safe=_HEADER_SAFE)


def binary_headers(attributes: Mapping[str, str]) -> dict[str, str]:
    """Binary-mode headers: ``ce-<name>`` per attribute, ``Content-Type`` for datacontenttype."""
    headers: dict[str, str] = {}
    if not _NEEDS_ENCODING.search("".join(attributes.values())):
        # The usual case, one search for all values: nothing to percent-encode.
        for name, value in attributes.items():
            headers["Content-Type" if name == "datacontenttype" else "ce-" + name] = value
        return headers
    for name, value in attributes.items():
        if name == "datacontenttype":
            headers["Content-Type"] = value
        else:
            headers["ce-" + name] = encode_header_value(value)
    return headers


def decode_header_value(name: str, value: str, wire: Wire = "utf-8") -> str:
    """The attribute value a ``ce-*`` header carries: text from ``wire``, percent-decoded."""
    if value.isascii():
        if "%" not in value:
            return value
    else:
        try:
            if wire == "latin-1":
                value = value.encode("latin-1").decode("utf-8")
            else:
                value = value.encode("utf-8", "surrogateescape").decode("utf-8")
        except UnicodeError:
            raise InvalidEvent(f"header {name!r} is not valid UTF-8", attribute=name) from None
        if "%" not in value:
            return value
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise InvalidEvent(
            f"header {name!r} percent-decodes to invalid UTF-8", attribute=name
        ) from None


_NOT_AN_EVENT = (
    "not a CloudEvent: no ce-specversion header (binary mode) and the content type is not "
    "application/cloudevents+json (structured mode)"
)


def binary_attributes(
    headers: Iterable[tuple[str, str]], *, wire: Wire = "utf-8"
) -> dict[str, str]:
    """Validated attributes of a binary-mode message from its ``(name, value)`` headers."""
    attributes: dict[str, str] = {}
    content_type: str | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith("ce-"):
            key = lowered[3:]
            if key not in attributes:  # a repeated header: the first one counts
                attributes[key] = (
                    value  # plain ASCII without escapes: nothing to decode
                    if value.isascii() and "%" not in value
                    else decode_header_value(name, value, wire)
                )
        elif lowered == "content-type" and content_type is None:
            content_type = value
    return _finish(attributes, content_type)


def wsgi_binary_attributes(environ: Mapping[str, Any]) -> dict[str, str]:
    """Validated attributes of a binary-mode request from its WSGI environ (PEP 3333)."""
    attributes: dict[str, str] = {}
    for key, value in environ.items():
        # WSGI spells header "ce-foo" as HTTP_CE_FOO (a str, one character per byte); a name
        # that had "_" or "-" in it is invalid either way and is refused by validation.
        if key[:8] == "HTTP_CE_":
            name = key[8:].lower()
            attributes[name] = (
                value
                if value.isascii() and "%" not in value
                else decode_header_value("ce-" + name, value, "latin-1")
            )
    return _finish(attributes, environ.get("CONTENT_TYPE"))


def _finish(attributes: dict[str, str], content_type: str | None) -> dict[str, str]:
    if "specversion" not in attributes:
        if attributes:  # ce-* headers without ce-specversion: name the one missing
            raise InvalidEvent(
                "missing required attribute 'specversion' (header ce-specversion)",
                attribute="specversion",
            )
        raise InvalidEvent(_NOT_AN_EVENT)
    attributes.pop("datacontenttype", None)  # binary mode carries it in Content-Type only
    if content_type:  # not percent-decoded: validation refuses anything but ASCII
        attributes["datacontenttype"] = content_type
    validate_attributes(attributes)
    return attributes

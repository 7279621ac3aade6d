"""A whole HTTP message to a CloudEvent: pick the content mode, then parse it (binding §3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from cascade.attribute_view import AttributeView
from cascade.codec.attributes import InvalidEvent
from cascade.codec.headers import Wire, binary_attributes, wsgi_binary_attributes
from cascade.codec.structured import STRUCTURED_CONTENT_TYPE, media_type, structured_attributes

__all__ = [
    "BATCH_CONTENT_TYPE",
    "CloudEventMessage",
    "ContentMode",
    "content_mode",
    "is_structured",
    "parse_headers",
    "parse_wsgi",
    "structured_message",
]

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

Mode = Literal["binary", "structured"]


class ContentMode(Enum):
    BINARY = "binary"
    STRUCTURED = "structured"
    BATCH = "batch"


def content_mode(content_type: str | None) -> ContentMode:
    """The content mode a ``Content-Type`` announces: its media type's prefix decides (§3)."""
    lowered = (content_type or "").lstrip().lower()
    if lowered.startswith("application/cloudevents-batch"):
        return ContentMode.BATCH
    if lowered.startswith("application/cloudevents"):
        return ContentMode.STRUCTURED
    return ContentMode.BINARY


@dataclass(frozen=True, slots=True)
class CloudEventMessage(AttributeView):
    """A parsed, validated CloudEvent: wire-form attributes and the raw data bytes."""

    attributes: Mapping[str, str]
    data: bytes
    mode: Mode = "binary"

    @property
    def datacontenttype(self) -> str | None:
        return self.attributes.get("datacontenttype")


def parse_headers(
    headers: Iterable[tuple[str, str]] | Mapping[str, str], body: bytes, *, wire: Wire = "utf-8"
) -> CloudEventMessage:
    """Parse a request or response from its headers (pairs or a mapping) and body."""
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    content_type = next((v for n, v in pairs if n.lower() == "content-type"), None)
    if is_structured(content_type):
        return structured_message(body)
    return CloudEventMessage(binary_attributes(pairs, wire=wire), body, "binary")


def parse_wsgi(environ: Mapping[str, Any], body: bytes) -> CloudEventMessage:
    """Parse a request from its WSGI environ (the function runtime's fast path)."""
    if is_structured(environ.get("CONTENT_TYPE")):
        return structured_message(body)
    return CloudEventMessage(wsgi_binary_attributes(environ), body, "binary")


def structured_message(body: bytes) -> CloudEventMessage:
    attributes, data = structured_attributes(body)
    return CloudEventMessage(attributes, data, "structured")


def is_structured(content_type: str | None) -> bool:
    """True for structured mode (JSON format), False for binary mode; raise InvalidEvent (415)
    for a batch or another event format."""
    mode = content_mode(content_type)
    if mode is ContentMode.BINARY:
        return False
    if mode is ContentMode.BATCH:
        raise InvalidEvent(
            f"batched CloudEvents ({BATCH_CONTENT_TYPE}) are not supported; "
            "send one event per request",
            status=415,
        )
    media = media_type(content_type)
    if media != STRUCTURED_CONTENT_TYPE:
        raise InvalidEvent(
            f"unsupported CloudEvents format {media!r}; only {STRUCTURED_CONTENT_TYPE} is "
            "supported",
            status=415,
        )
    return True

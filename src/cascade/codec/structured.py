"""Structured content mode with the JSON event format (``application/cloudevents+json``).

The event becomes wire-form attributes plus raw data bytes, the same form binary mode gives:
JSON ``data`` is re-serialized compactly; ``data_base64`` (and 0.3's ``datacontentencoding:
base64``) is decoded to the raw bytes; string ``data`` with a non-JSON ``datacontenttype`` is
its UTF-8 text. Attribute values may be JSON strings, integers or booleans (``true``/``false``);
``specversion``, ``id``, ``source`` and ``type`` must be strings; ``null`` means absent.

``data`` nested deeper than :data:`MAX_JSON_DEPTH` is refused with a 400 (issue 10): far beyond
any real event, and well inside what orjson and the SDKs can parse and write.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final

import orjson

from cascade.codec.attributes import REQUIRED, InvalidEvent, validate_attributes

__all__ = [
    "MAX_JSON_DEPTH",
    "STRUCTURED_CONTENT_TYPE",
    "is_json_content_type",
    "json_depth_exceeds",
    "media_type",
    "structured_attributes",
]

STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
MAX_JSON_DEPTH: Final = 128
_JSON_MEDIA_TYPE = re.compile(r"(?:application|text)/(?:[a-z0-9.\-]+\+)?json", re.IGNORECASE)


def media_type(content_type: str | None) -> str:
    """``"text/plain; charset=utf-8"`` → ``"text/plain"``; ``""`` for none."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_content_type(content_type: str | None) -> bool:
    """True for absent (JSON is the format's default), ``application/json``, ``*/*+json``."""
    media = media_type(content_type)
    return not media or _JSON_MEDIA_TYPE.fullmatch(media) is not None


def json_depth_exceeds(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when a decoded JSON value nests arrays/objects more than ``limit`` levels deep."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def structured_attributes(body: bytes) -> tuple[dict[str, str], bytes]:
    """Validated wire-form attributes and raw data of a JSON-format structured event."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"structured CloudEvent is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidEvent("structured CloudEvent must be a JSON object")
    data: Any = document.pop("data", None)
    data_base64: Any = document.pop("data_base64", None)
    attributes: dict[str, str] = {}
    for name, value in document.items():
        text = _attribute_text(name, value)
        if text is not None:
            attributes[name] = text
    validate_attributes(attributes)
    return attributes, _data_bytes(attributes, data, data_base64)


def _attribute_text(name: str, value: object) -> str | None:
    if value is None:  # JSON null means "absent"
        return None
    if isinstance(value, str):
        return value
    if name == "specversion" or name in REQUIRED:
        raise InvalidEvent(f"attribute {name!r} must be a string", attribute=name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise InvalidEvent(
        f"attribute {name!r} must be a string, integer or boolean, got {type(value).__name__}",
        attribute=name,
    )


def _data_bytes(attributes: dict[str, str], data: Any, data_base64: Any) -> bytes:
    if data is not None and data_base64 is not None:
        raise InvalidEvent("structured CloudEvent has both 'data' and 'data_base64'")
    encoding = (
        attributes.pop("datacontentencoding", None) if attributes["specversion"] == "0.3" else None
    )  # 0.3: a body encoding, consumed here; binary storage carries the raw bytes instead
    if data_base64 is not None:
        return _base64("data_base64", data_base64)
    if data is None:
        return b""
    if encoding is not None:
        if encoding.lower() != "base64":
            raise InvalidEvent(f"unsupported datacontentencoding {encoding!r}")
        return _base64("data (datacontentencoding base64)", data)
    if isinstance(data, str) and not is_json_content_type(attributes.get("datacontenttype")):
        return data.encode("utf-8")
    if json_depth_exceeds(data):
        raise InvalidEvent(f"data is nested deeper than {MAX_JSON_DEPTH} levels")
    return orjson.dumps(data)


def _base64(where: str, encoded: object) -> bytes:
    # Strict: the SDK decodes leniently (invalid characters skipped), which would alter data.
    if not isinstance(encoded, str):
        raise InvalidEvent(f"invalid CloudEvent data: {where} must be a base64 string")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidEvent(f"invalid CloudEvent data: {where} is not base64 ({exc})") from None

"""OTLP/HTTP span export with a lean protobuf encoder.

The SDK's exporter builds one generated protobuf object per span, attribute and value before
serialising; at one span per event that was the single largest CPU cost of a function (tens
of microseconds per span). :func:`encode_spans` writes the same ``ExportTraceServiceRequest``
bytes directly. Everything else (endpoint, headers, timeout, compression, TLS, retries, the
``OTEL_EXPORTER_OTLP_*`` variables) stays the SDK's: :class:`OTLPSpanExporter` only swaps the
encoding step. tests/unit/telemetry/test_otlp.py checks that both encoders produce equal
messages for every shape of span the SDK can hand over.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as _SdkOTLPSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind

__all__ = ["OTLPSpanExporter", "encode_spans"]

_log = logging.getLogger(__name__)

# Wire types.
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_KIND: Final = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_HAS_IS_REMOTE: Final = 0x100
_IS_REMOTE: Final = 0x200
_FIXED64_LE = struct.Struct("<Q").pack
_FIXED32_LE = struct.Struct("<I").pack
_DOUBLE_LE = struct.Struct("<d").pack


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 two's complement, always 10 bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


# Lookup tables: tags of length-delimited fields 0-19 and one-byte varints 0-127.
_LEN_TAG: Final = tuple(_tag(field, _LEN) for field in range(20))
_SMALL: Final = tuple(bytes((n,)) for n in range(128))


def _len_field(field: int, payload: bytes) -> bytes:
    size = len(payload)
    return _LEN_TAG[field] + (_SMALL[size] if size < 128 else _varint(size)) + payload


# Precomputed tags of the hot fields.
_T_SPAN_TRACE_ID = _tag(1, _LEN)
_T_SPAN_SPAN_ID = _tag(2, _LEN)
_T_SPAN_TRACE_STATE = 3
_T_SPAN_PARENT = _tag(4, _LEN)
_T_SPAN_NAME = 5
_T_SPAN_KIND = _tag(6, _VARINT)
_T_SPAN_START = _tag(7, _FIXED64)
_T_SPAN_END = _tag(8, _FIXED64)
_T_SPAN_ATTRIBUTE = 9
_T_SPAN_DROPPED_ATTRIBUTES = _tag(10, _VARINT)
_T_SPAN_EVENT = 11
_T_SPAN_DROPPED_EVENTS = _tag(12, _VARINT)
_T_SPAN_LINK = 13
_T_SPAN_DROPPED_LINKS = _tag(14, _VARINT)
_T_SPAN_STATUS = 15
_T_SPAN_FLAGS = _tag(16, _FIXED32)

_key_cache: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    # KeyValue.key (field 1), cached: spans repeat the same few attribute names.
    encoded = _key_cache.get(key)
    if encoded is None:
        encoded = _len_field(1, key.encode("utf-8"))
        if len(_key_cache) < 4096:
            _key_cache[key] = encoded
    return encoded


def _any_value(value: Any) -> bytes:
    """An AnyValue message body. Its oneof is always written, default values included."""
    if value.__class__ is str:  # the common case first
        return _len_field(1, value.encode("utf-8"))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _len_field(1, value.encode("utf-8"))
    if isinstance(value, int):
        return _tag(3, _VARINT) + _varint(value)
    if isinstance(value, float):
        return _tag(4, _FIXED64) + _DOUBLE_LE(value)
    if isinstance(value, bytes):
        return _len_field(7, value)
    if isinstance(value, Mapping):
        entries = b"".join(_len_field(1, _key_value(str(k), v)) for k, v in value.items())
        return _len_field(6, entries)
    if isinstance(value, Sequence):
        items = b"".join(_len_field(1, _any_value(v)) for v in value)
        return _len_field(5, items)
    if value is None:
        return b""
    raise TypeError(f"cannot encode attribute value of type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    encoded_key = _key_cache.get(key) or _key(key)
    return encoded_key + _len_field(2, _any_value(value))


def _attributes(field: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    parts = []
    for key, value in attributes.items():
        try:
            parts.append(_len_field(field, _key_value(key, value)))
        except Exception:  # like the SDK: drop the one attribute, keep the span
            _log.exception("Failed to encode key %s", key)
    return b"".join(parts)


def _flags(parent: SpanContext | None) -> int:
    if parent is not None and parent.is_remote:
        return _HAS_IS_REMOTE | _IS_REMOTE
    return _HAS_IS_REMOTE


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None
    parts = [
        _T_SPAN_TRACE_ID,
        b"\x10",
        context.trace_id.to_bytes(16, "big"),
        _T_SPAN_SPAN_ID,
        b"\x08",
        context.span_id.to_bytes(8, "big"),
    ]
    trace_state = context.trace_state
    if trace_state:
        parts.append(
            _len_field(
                _T_SPAN_TRACE_STATE,
                ",".join(f"{k}={v}" for k, v in trace_state.items()).encode(),
            )
        )
    parent = span.parent
    if parent is not None:
        parts += (_T_SPAN_PARENT, b"\x08", parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_len_field(_T_SPAN_NAME, span.name.encode("utf-8")))
    parts += (_T_SPAN_KIND, _varint(_KIND[span.kind]))
    if span.start_time:
        parts += (_T_SPAN_START, _FIXED64_LE(span.start_time))
    if span.end_time:
        parts += (_T_SPAN_END, _FIXED64_LE(span.end_time))
    parts.append(_attributes(_T_SPAN_ATTRIBUTE, span.attributes))
    if span.dropped_attributes:
        parts += (_T_SPAN_DROPPED_ATTRIBUTES, _varint(span.dropped_attributes))
    for event in span.events:
        body = _attributes(3, event.attributes)
        if event.name:
            body = _len_field(2, event.name.encode("utf-8")) + body
        if event.timestamp:
            body = _tag(1, _FIXED64) + _FIXED64_LE(event.timestamp) + body
        if event.dropped_attributes:
            body += _tag(4, _VARINT) + _varint(event.dropped_attributes)
        parts.append(_len_field(_T_SPAN_EVENT, body))
    if span.dropped_events:
        parts += (_T_SPAN_DROPPED_EVENTS, _varint(span.dropped_events))
    for link in span.links:
        linked = link.context
        body = (
            _len_field(1, linked.trace_id.to_bytes(16, "big"))
            + _len_field(2, linked.span_id.to_bytes(8, "big"))
            + _attributes(4, link.attributes)
        )
        if link.dropped_attributes:
            body += _tag(5, _VARINT) + _varint(link.dropped_attributes)
        body += _tag(6, _FIXED32) + _FIXED32_LE(_flags(linked))
        parts.append(_len_field(_T_SPAN_LINK, body))
    if span.dropped_links:
        parts += (_T_SPAN_DROPPED_LINKS, _varint(span.dropped_links))
    status = span.status
    status_body = b""
    if status.description:
        status_body += _len_field(2, status.description.encode("utf-8"))
    if status.status_code.value:
        status_body += _tag(3, _VARINT) + _varint(status.status_code.value)
    parts.append(_len_field(_T_SPAN_STATUS, status_body))  # present even when empty
    parts += (_T_SPAN_FLAGS, _FIXED32_LE(_flags(parent)))
    return b"".join(parts)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    body = b""
    if scope.name:
        body += _len_field(1, scope.name.encode("utf-8"))
    if scope.version:
        body += _len_field(2, scope.version.encode("utf-8"))
    return body + _attributes(3, scope.attributes)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """A serialised ``ExportTraceServiceRequest`` for ``spans`` (grouped by resource, then
    instrumentation scope, in first-seen order, like the SDK's encoder)."""
    # Grouped by object identity first: Resource.__hash__ serialises its attributes to JSON,
    # too slow to pay per span. Distinct but equal objects still share one group.
    groups: list[tuple[Resource, dict[InstrumentationScope | None, list[bytes]]]] = []
    group_of: dict[int, dict[InstrumentationScope | None, list[bytes]]] = {}
    for span in spans:
        resource = span.resource
        by_scope = group_of.get(id(resource))
        if by_scope is None:
            for known, known_scopes in groups:
                if known == resource:
                    by_scope = known_scopes
                    break
            else:
                by_scope = {}
                groups.append((resource, by_scope))
            group_of[id(resource)] = by_scope
        by_scope.setdefault(span.instrumentation_scope or None, []).append(
            _len_field(2, _span(span))
        )
    out = []
    for resource, by_scope in groups:
        body = _len_field(1, _attributes(1, resource.attributes))
        for scope, encoded in by_scope.items():
            scope_body = _len_field(1, _scope(scope)) + b"".join(encoded)
            schema_url = scope.schema_url if scope is not None else None
            if schema_url:
                scope_body += _len_field(3, schema_url.encode("utf-8"))
            body += _len_field(2, scope_body)
        if resource.schema_url:
            body += _len_field(3, resource.schema_url.encode("utf-8"))
        out.append(_len_field(1, body))
    return b"".join(out)


class OTLPSpanExporter(_SdkOTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter with :func:`encode_spans` as its encoder."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            _log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        try:
            data = encode_spans(spans)
        except Exception:
            _log.exception("Failed to encode span batch")
            return SpanExportResult.FAILURE
        result = self._client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE

"""Trigger filters, with the semantics of Knative's Kafka broker class (spec §2).

``compile_trigger_filter`` turns a Trigger ``spec`` mapping (as loaded from YAML) into a
:class:`Filter` once, at load time; the broker then calls ``matches`` per event per Trigger.
Events are given in their wire form: every attribute and extension is a string (§6.8).

Rules (§2.1-§2.4, Kafka column):

- A non-empty ``spec.filters`` wins and ``spec.filter`` is ignored; otherwise
  ``spec.filter.attributes`` applies; with neither, every event matches.
- The entries of ``spec.filters`` are ANDed. Each entry uses exactly one dialect:
  ``exact``, ``prefix``, ``suffix``, ``all``, ``any``, ``not`` or ``cesql``.
- In ``filter.attributes``, ``exact``, ``prefix`` and ``suffix`` an entry whose expected value is
  ``""`` is ignored, so it matches even when the attribute is missing (the Kafka data plane
  drops such entries). A missing attribute never matches a non-empty expected value.
- ``time`` is compared in Java's ``ISO_INSTANT`` form (UTC, trailing ``Z``, fraction digits in
  groups of three): the event's value is normalized, the expected value is not. ``schemaurl``
  (CloudEvents 0.3) and ``dataschema`` name the same attribute.
- ``cesql`` matches only when the expression yields boolean true with no evaluation error.

Validation follows the Knative admission webhook plus the stricter checks of §2.2: attribute
keys must match ``^[a-z][a-z0-9]*$``, a CESQL expression must parse, ``all``/``any`` must not be
empty, and wrongly typed values are rejected. Errors carry the path of the offending field.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Protocol

from cascade.broker.cesql import CesqlError, Expression
from cascade.broker.cesql import parse as parse_cesql

__all__ = [
    "AllFilter",
    "AnyFilter",
    "AttributeFilter",
    "CesqlFilter",
    "Filter",
    "FilterValidationError",
    "MatchAll",
    "NotFilter",
    "compile_trigger_filter",
    "iso_instant",
]

ATTRIBUTE_KEY_PATTERN: Final = "^[a-z][a-z0-9]*$"
_ATTRIBUTE_KEY = re.compile(r"[a-z][a-z0-9]*\Z")
DIALECTS: Final = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")


class Filter(Protocol):
    """Decides whether an event, given by its wire-form attributes, passes a Trigger."""

    def matches(self, attributes: Mapping[str, str]) -> bool: ...


class FilterValidationError(ValueError):
    """A Trigger filter that Knative's admission would reject (or that cannot be understood).

    ``field`` is the path of the offending field, e.g. ``spec.filters[1].any[0].exact``;
    ``message`` says what is wrong. ``str(err)`` is ``"<field>: <message>"``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- matching -----------------------------------------------------------------------------

_PLAIN, _TIME, _SCHEMA = 0, 1, 2


@dataclass(frozen=True, slots=True)
class MatchAll:
    """No filter: every event passes."""

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class AttributeFilter:
    """``exact``, ``prefix`` or ``suffix`` over some attributes (all must pass).

    ``entries`` holds ``(key, expected)`` pairs; entries with an empty expected value were
    dropped at compile time, as the Kafka data plane does.
    """

    kind: str
    entries: tuple[tuple[str, str], ...]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        kind = self.kind
        for key, expected in self.entries:
            actual = _attribute_value(attributes, key)
            if actual is None:
                return False
            if kind == "exact":
                if actual != expected:
                    return False
            elif kind == "prefix":
                if not actual.startswith(expected):
                    return False
            elif not actual.endswith(expected):
                return False
        return True


@dataclass(frozen=True, slots=True)
class AllFilter:
    """Every nested filter passes (short-circuit)."""

    filters: tuple[Filter, ...]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return all(f.matches(attributes) for f in self.filters)


@dataclass(frozen=True, slots=True)
class AnyFilter:
    """At least one nested filter passes (short-circuit)."""

    filters: tuple[Filter, ...]

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return any(f.matches(attributes) for f in self.filters)


@dataclass(frozen=True, slots=True)
class NotFilter:
    """The nested filter does not pass."""

    filter: Filter

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return not self.filter.matches(attributes)


@dataclass(frozen=True, slots=True)
class CesqlFilter:
    """A CESQL v1 expression; passes only on boolean true without evaluation errors."""

    expression: Expression

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return self.expression.matches(attributes)


def _attribute_value(attributes: Mapping[str, str], key: str) -> str | None:
    if key == "time":
        raw = attributes.get("time")
        return None if raw is None else iso_instant(raw)
    if key == "dataschema" or key == "schemaurl":
        value = attributes.get("dataschema")
        return attributes.get("schemaurl") if value is None else value
    return attributes.get(key)


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))\Z"
)


@functools.lru_cache(maxsize=1024)
def iso_instant(value: str) -> str:
    """Format an RFC 3339 timestamp the way Java's ``DateTimeFormatter.ISO_INSTANT`` does.

    UTC with a trailing ``Z``; seconds always shown; the fraction uses 0, 3, 6 or 9 digits.
    A value that does not parse is returned unchanged (the ingress rejects such events).
    """
    m = _RFC3339.match(value)
    if m is None:
        return value
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    try:
        offset = timedelta(0)
        if m.group(8) is not None:
            offset = timedelta(hours=int(m.group(9)), minutes=int(m.group(10)))
            if m.group(8) == "-":
                offset = -offset
        local = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
        utc = local.astimezone(UTC)
    except (ValueError, OverflowError):
        return value
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.year < 1000:  # strftime does not zero-pad the year on every platform
        text = f"{utc.year:04d}{text[text.index('-') :]}"
    fraction = (m.group(7) or "").ljust(9, "0").rstrip("0")
    if fraction:
        fraction = fraction.ljust(-(-len(fraction) // 3) * 3, "0")
        text = f"{text}.{fraction}"
    return f"{text}Z"


# --- compiling and validating -------------------------------------------------------------


def compile_trigger_filter(trigger_spec: Mapping[str, Any]) -> Filter:
    """Compile the filter of a Trigger ``spec`` (the mapping under ``spec:`` in YAML).

    Raises :class:`FilterValidationError` naming the offending field, e.g.
    ``spec.filters[1].any[0].exact: attribute key 'Bad-Key' must match ^[a-z][a-z0-9]*$``.
    Both ``filter`` and ``filters`` are validated even when ``filters`` overrides ``filter``,
    as the admission webhook does.
    """
    if not isinstance(trigger_spec, Mapping):
        raise FilterValidationError("spec", f"must be a mapping, got {_type_name(trigger_spec)}")
    legacy = _compile_legacy_filter(trigger_spec.get("filter"), "spec.filter")
    filters = _compile_filters_list(trigger_spec.get("filters"), "spec.filters")
    if filters is not None:
        return filters[0] if len(filters) == 1 else AllFilter(filters)
    return legacy


def _compile_legacy_filter(value: object, path: str) -> Filter:
    if value is None:
        return MatchAll()
    if not isinstance(value, Mapping):
        raise FilterValidationError(path, f"must be a mapping, got {_type_name(value)}")
    for key in value:
        if key != "attributes":
            raise FilterValidationError(
                path, f"unknown field {key!r}; the only field of filter is 'attributes'"
            )
    attributes = value.get("attributes")
    if attributes is None:
        return MatchAll()
    entries = _attribute_entries(attributes, f"{path}.attributes")
    return AttributeFilter("exact", entries) if entries else MatchAll()


def _compile_filters_list(value: object, path: str) -> tuple[Filter, ...] | None:
    """Compile ``spec.filters``; None when absent or empty (then ``spec.filter`` applies)."""
    if value is None:
        return None
    items = _sequence(value, path)
    if not items:
        return None
    return tuple(_compile_dialect(item, f"{path}[{i}]") for i, item in enumerate(items))


def _compile_dialect(value: object, path: str) -> Filter:
    if not isinstance(value, Mapping):
        raise FilterValidationError(
            path, f"must be a mapping with one of {', '.join(DIALECTS)}; got {_type_name(value)}"
        )
    unknown = [key for key in value if key not in DIALECTS]
    if unknown:
        raise FilterValidationError(
            path,
            f"unknown dialect {unknown[0]!r}; expected exactly one of {', '.join(DIALECTS)}",
        )
    present = [key for key in DIALECTS if key in value and value[key] is not None]
    if len(present) > 1:
        raise FilterValidationError(
            path,
            "multiple dialects found, filters can have only one dialect set "
            f"(found {', '.join(present)})",
        )
    if not present:
        raise FilterValidationError(
            path, f"no dialect found; expected exactly one of {', '.join(DIALECTS)}"
        )
    dialect = present[0]
    body = value[dialect]
    field = f"{path}.{dialect}"
    if dialect in ("exact", "prefix", "suffix"):
        entries = _attribute_entries(body, field)
        return AttributeFilter(dialect, entries) if entries else MatchAll()
    if dialect in ("all", "any"):
        items = _sequence(body, field)
        if not items:
            raise FilterValidationError(field, "must contain at least one nested filter")
        nested = tuple(_compile_dialect(item, f"{field}[{i}]") for i, item in enumerate(items))
        return AllFilter(nested) if dialect == "all" else AnyFilter(nested)
    if dialect == "not":
        return NotFilter(_compile_dialect(body, field))
    return CesqlFilter(_compile_cesql(body, field))


def _compile_cesql(value: object, path: str) -> Expression:
    if not isinstance(value, str):
        raise FilterValidationError(
            path, f"must be a string holding a CESQL expression, got {_type_name(value)}"
        )
    try:
        return parse_cesql(value)
    except CesqlError as err:
        raise FilterValidationError(path, f"invalid CESQL expression: {err}") from err


def _attribute_entries(value: object, path: str) -> tuple[tuple[str, str], ...]:
    """Validate an attribute map and keep the entries that take part in matching."""
    if not isinstance(value, Mapping):
        raise FilterValidationError(
            path, f"must be a mapping of attribute name to string, got {_type_name(value)}"
        )
    entries: list[tuple[str, str]] = []
    for key, expected in value.items():
        if not isinstance(key, str) or not _ATTRIBUTE_KEY.match(key):
            raise FilterValidationError(
                path, f"attribute key {key!r} must match {ATTRIBUTE_KEY_PATTERN}"
            )
        if not isinstance(expected, str):
            raise FilterValidationError(
                path,
                f"value of attribute {key!r} must be a string, got {_type_name(expected)} "
                f"{expected!r} (quote it in YAML)",
            )
        if expected:  # Kafka ignores empty expected values (§2.3)
            entries.append((key, expected))
    return tuple(entries)


def _sequence(value: object, path: str) -> Sequence[object]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise FilterValidationError(path, f"must be a list of filters, got {_type_name(value)}")
    return value


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, Sequence):
        return "list"
    return type(value).__name__

"""Knative ``DeliverySpec`` as the Kafka broker applies it (spec §3.1-§3.5).

``parse_delivery`` validates a ``delivery`` mapping the way the eventing webhook does (with the
default feature flags: ``delivery-timeout`` on, ``delivery-retryafter`` off) and fills in the
Kafka data plane's defaults for unset fields. ``DeliverySpec.backoff`` is the Kafka dispatcher's
formula (§3.4), which differs from the multi-tenant broker's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal

import isodate

__all__ = [
    "BROKER_DEFAULT_DELIVERY",
    "DEFAULT_BACKOFF_DELAY_SECONDS",
    "DEFAULT_TIMEOUT_SECONDS",
    "MAX_BACKOFF_SECONDS",
    "BackoffPolicy",
    "DeliverySpec",
    "SpecFieldError",
    "describe_value",
    "field_name",
    "parse_delivery",
    "parse_duration",
]

BackoffPolicy = Literal["exponential", "linear"]

# Kafka control plane passes 200 ms when retry is set without backoffDelay (§3.2).
DEFAULT_BACKOFF_DELAY_SECONDS: Final = 0.2
# Kafka dispatcher DEFAULT_TIMEOUT_MS when the timeout is unset (§3.5).
DEFAULT_TIMEOUT_SECONDS: Final = 600.0
# The exact formula overflows (float, and Java's long in the real dispatcher) for large retry
# numbers; no retry that far out is ever reached, so clamp to ~31 years, a value that
# time.sleep, Event.wait and asyncio timers all accept.
MAX_BACKOFF_SECONDS: Final = 1e9
_INT32_MAX: Final = 2**31 - 1

_FIELDS: Final = (
    "retry",
    "backoffPolicy",
    "backoffDelay",
    "timeout",
    "retryAfterMax",
    "format",
    "deadLetterSink",
)
# Only the ASCII forms that a Go ISO-8601 period parser would also take: a sign, "P", then
# digits, designators and decimal marks, with at least one digit.
_DURATION_SHAPE = re.compile(r"[+-]?P[0-9YMWDTHS.,]*[0-9][0-9YMWDTHS.,]*\Z")


class SpecFieldError(ValueError):
    """A field of a manifest is invalid. ``field`` is its path, e.g. ``backoffDelay``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message

    def within(self, parent: str) -> SpecFieldError:
        """The same error with its path under ``parent`` (``spec.delivery`` + ``retry``)."""
        if not self.field:
            return SpecFieldError(parent, self.message)
        sep = "" if self.field.startswith("[") else "."
        return SpecFieldError(f"{parent}{sep}{self.field}", self.message)


@dataclass(frozen=True)
class DeliverySpec:
    """The effective delivery options of one Trigger (or the defaults of one Broker)."""

    retry: int = 0
    backoff_policy: BackoffPolicy = "exponential"
    backoff_delay: float = DEFAULT_BACKOFF_DELAY_SECONDS
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    dead_letter_sink: str | None = None
    dead_letter_audience: str | None = None  # the sink's OIDC audience (cascade broker --oidc)

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 = first retry), Kafka formula §3.4.

        Exponential ``d * 2**n``, linear ``d * n``; ``d <= 0`` gives immediate retries.
        """
        if retry_number < 1:
            raise ValueError(f"retry numbers start at 1, got {retry_number}")
        d = self.backoff_delay
        if d <= 0:
            return 0.0
        if self.backoff_policy == "linear":
            return min(d * retry_number, MAX_BACKOFF_SECONDS)
        # Past log2(MAX / d) the wait is clamped; checking first keeps ldexp from overflowing.
        if retry_number >= math.log2(MAX_BACKOFF_SECONDS) - math.log2(d):
            return MAX_BACKOFF_SECONDS
        return math.ldexp(d, retry_number)


# What a Broker without spec.delivery gets from config-br-defaults (§3.2).
BROKER_DEFAULT_DELIVERY: Final = DeliverySpec(
    retry=10, backoff_policy="exponential", backoff_delay=0.2
)


def parse_duration(value: object, field: str) -> float:
    """An ISO-8601 duration (``PT0.2S``, ``P1DT2H``) in seconds; negative values allowed.

    Year and month durations are refused: they have no fixed length.
    """
    if not isinstance(value, str):
        raise SpecFieldError(
            field,
            f"must be an ISO-8601 duration string such as 'PT0.2S', got {describe_value(value)}",
        )
    if not (value.isascii() and _DURATION_SHAPE.match(value)):
        raise SpecFieldError(
            field, f"{describe_value(value)} is not an ISO-8601 duration (e.g. 'PT0.2S')"
        )
    try:
        parsed = isodate.parse_duration(value)
    except (ValueError, OverflowError, ArithmeticError) as err:
        raise SpecFieldError(
            field, f"{describe_value(value)} is not an ISO-8601 duration (e.g. 'PT0.2S')"
        ) from err
    if isinstance(parsed, isodate.Duration):
        if parsed.years or parsed.months:
            raise SpecFieldError(
                field,
                f"{describe_value(value)} uses years or months, which have no fixed length; "
                "use days, hours, minutes or seconds (e.g. 'P30D')",
            )
        parsed = parsed.tdelta
    if not isinstance(parsed, timedelta):  # pragma: no cover - isodate returns one of the two
        raise SpecFieldError(field, f"{describe_value(value)} is not an ISO-8601 duration")
    return parsed.total_seconds()


def parse_delivery(
    raw: object,
    *,
    resolve_dead_letter_sink: Callable[[object], str],
    notices: list[str],
) -> DeliverySpec:
    """Validate a ``delivery`` mapping and apply the Kafka defaults to unset fields.

    ``resolve_dead_letter_sink`` turns the ``deadLetterSink`` Destination into an absolute URL
    (raising :class:`SpecFieldError` with a path relative to the Destination). Notices for
    accepted-but-ignored fields are appended to ``notices`` with the field path only; the
    caller adds the object. Errors carry paths relative to ``delivery``.
    """
    if not isinstance(raw, Mapping):
        raise SpecFieldError("", f"must be a mapping, got {describe_value(raw)}")
    for key in raw:
        if key not in _FIELDS:
            raise SpecFieldError(
                field_name(key), f"unknown field; a delivery spec has only {', '.join(_FIELDS)}"
            )

    retry = 0
    if raw.get("retry") is not None:
        value = raw["retry"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecFieldError("retry", f"must be an integer >= 0, got {describe_value(value)}")
        if not 0 <= value <= _INT32_MAX:
            raise SpecFieldError("retry", f"must be an integer >= 0 (int32), got {value}")
        retry = value

    policy: BackoffPolicy = "exponential"
    if raw.get("backoffPolicy") is not None:
        value = raw["backoffPolicy"]
        if value == "linear":
            policy = "linear"
        elif value != "exponential":
            raise SpecFieldError(
                "backoffPolicy", f"must be 'linear' or 'exponential', got {describe_value(value)}"
            )

    delay = DEFAULT_BACKOFF_DELAY_SECONDS
    if raw.get("backoffDelay") is not None:
        delay = parse_duration(raw["backoffDelay"], "backoffDelay")
        if delay < 0:
            raise SpecFieldError(
                "backoffDelay", f"{describe_value(raw['backoffDelay'])} must not be negative"
            )

    timeout = DEFAULT_TIMEOUT_SECONDS
    if raw.get("timeout") is not None:
        timeout = parse_duration(raw["timeout"], "timeout")
        if timeout <= 0:
            raise SpecFieldError(
                "timeout", f"{describe_value(raw['timeout'])} must be greater than 0"
            )

    if raw.get("retryAfterMax") is not None:
        raise SpecFieldError(
            "retryAfterMax",
            "not allowed: the delivery-retryafter feature is off by default, and the Kafka "
            "broker ignores Retry-After anyway (§3.6)",
        )

    if raw.get("format") is not None:
        value = raw["format"]
        if value not in ("json", "binary"):
            raise SpecFieldError(
                "format", f"must be 'json' or 'binary', got {describe_value(value)}"
            )
        notices.append(
            f"format {value!r} is ignored: the Kafka broker always delivers in binary mode"
        )

    sink = None
    if raw.get("deadLetterSink") is not None:
        try:
            sink = resolve_dead_letter_sink(raw["deadLetterSink"])
        except SpecFieldError as err:
            raise err.within("deadLetterSink") from None

    return DeliverySpec(
        retry=retry,
        backoff_policy=policy,
        backoff_delay=delay,
        timeout=timeout,
        dead_letter_sink=sink,
    )


def field_name(key: object) -> str:
    """A mapping key as a field path segment, bounded in length (keys come from YAML)."""
    text = key if isinstance(key, str) else repr(key)
    return text if len(text) <= 60 else f"{text[:57]}..."


def describe_value(value: object) -> str:
    """A short, bounded description of a YAML value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float, str)):
        text = repr(value)
        return text if len(text) <= 80 else f"{text[:77]}..."
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__

"""One delivery with retries, as the Kafka dispatcher's WebClientCloudEventSender does it.

- Classification (§3.3): status < 300 succeeds; >= 500, 404, 408, 409, 429 and transport errors
  (refused, reset, timeout) are retried; every other status fails at once.
- Backoff (§3.4): the wait before retry ``n`` is ``policy.backoff(n)``, no jitter; Retry-After is
  ignored (§3.6).
- Timeout (§3.5): per attempt, 600 s when the delivery spec sets none.

The HTTP work is injected (``SendOnce``), so this module is pure logic and unit-tested alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "DeliveryResult",
    "HttpResponse",
    "RetryPolicy",
    "TransportError",
    "Verdict",
    "classify",
    "deliver",
]

DEFAULT_TIMEOUT_SECONDS = 600.0
_RETRYABLE_4XX = frozenset({404, 408, 409, 429})


class Verdict(Enum):
    SUCCESS = "success"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


def classify(status: int) -> Verdict:
    """What the Kafka dispatcher makes of a response status (§3.3)."""
    if status < 300:
        return Verdict.SUCCESS
    if status >= 500 or status in _RETRYABLE_4XX:
        return Verdict.RETRYABLE
    return Verdict.PERMANENT


@dataclass(frozen=True)
class HttpResponse:
    """A subscriber's answer. ``trace_headers`` is the attempt's trace context, for replies."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    trace_headers: Mapping[str, str] = field(default_factory=dict)


class TransportError(Exception):
    """The attempt got no HTTP response: connection refused or reset, timeout, ..."""


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` after the first attempt; ``backoff(n)`` seconds before retry n (1-based)."""

    retries: int
    backoff: Callable[[int], float]
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")


@dataclass(frozen=True)
class DeliveryResult:
    """How a delivery ended: the last response (None after a transport error)."""

    succeeded: bool
    attempts: int
    response: HttpResponse | None
    error: str | None = None

    def describe(self) -> str:
        if self.response is not None:
            return f"HTTP {self.response.status} after {self.attempts} attempt(s)"
        return f"{self.error or 'no response'} after {self.attempts} attempt(s)"


SendOnce = Callable[[int, float], Awaitable[HttpResponse]]
"""``send_once(attempt, timeout)``: one attempt; raises TransportError when nothing came back."""


async def deliver(
    send_once: SendOnce,
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_retry: Callable[[int], object] | None = None,
) -> DeliveryResult:
    """Attempt until success, a non-retryable answer, or ``policy.retries`` retries are spent."""
    response: HttpResponse | None = None
    error: str | None = None
    attempt = 0
    for attempt in range(1, policy.retries + 2):
        if attempt > 1:
            if on_retry is not None:
                on_retry(attempt)
            delay = policy.backoff(attempt - 1)
            await sleep(delay if delay > 0 else 0)
        try:
            response = await send_once(attempt, policy.timeout)
        except TransportError as exc:
            response, error = None, str(exc) or type(exc).__name__
            continue
        error = None
        verdict = classify(response.status)
        if verdict is Verdict.SUCCESS:
            return DeliveryResult(True, attempt, response)
        if verdict is Verdict.PERMANENT:
            break
    return DeliveryResult(False, attempt, response, error)

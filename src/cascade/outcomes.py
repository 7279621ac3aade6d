"""Outcomes a handler can signal besides returning a reply.

Each maps onto an HTTP answer that Knative's dispatcher (and Cascade's local broker) acts on:

- ``raise Retry(after=2)``: 503 + ``Retry-After: 2``; the broker retries with backoff.
- ``raise DeadLetter("reason")``: 422 + ``Kne-Reason``; the broker sends the event straight
  to the dead-letter sink, keeping the reason.
- ``raise Drop("reason")`` (or ``return Drop()``): 204; the event is acknowledged and ignored.

All three roll back the handler's store effects and leave no dedupe record.
"""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = ["DeadLetter", "Drop", "Outcome", "Retry"]


class Outcome(Exception):
    """Base of the control-flow signals a handler raises (not errors: no traceback is logged)."""

    reason: str

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class Retry(Outcome):
    """Transient failure: answer 503 so the broker redelivers later.

    ``after`` (seconds or a timedelta) becomes the ``Retry-After`` header, rounded up to whole
    seconds as HTTP requires; ``None`` sends no header.
    """

    def __init__(self, after: float | timedelta | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested by handler")
        seconds = after.total_seconds() if isinstance(after, timedelta) else after
        if seconds is not None and (math.isnan(seconds) or seconds < 0):
            raise ValueError(f"Retry(after=...) must be >= 0 seconds, got {after!r}")
        self.after: float | None = seconds

    @property
    def retry_after_header(self) -> str | None:
        return None if self.after is None else str(math.ceil(self.after))


class DeadLetter(Outcome):
    """Permanent failure: answer 422 with ``Kne-Reason`` so the event goes to the DLS."""

    def __init__(self, reason: str) -> None:
        if not reason or not reason.strip():
            raise ValueError("DeadLetter needs a reason; it travels with the dead-lettered event")
        super().__init__(reason)


class Drop(Outcome):
    """Acknowledge the event without a reply and without effects (204)."""

"""Timestamps as the shop stores and shows them: RFC 3339, UTC, milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso", "now_iso"]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(datetime.now(UTC))

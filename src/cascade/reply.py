"""Outgoing events: ``Reply`` options and the attributes of every event the runtime emits.

Functions never build ``ce-*`` headers: they return a model (or ``Reply(model, ...)`` to set
subject, partitionkey or extensions) and the runtime fills in specversion, id, source, type,
time and datacontenttype here, for replies and published events alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from cascade.codec import extension_name_problem
from cascade.events import Event, bound_type

__all__ = ["Reply", "outgoing_attributes"]

# Attributes the runtime owns; `traceparent`/`tracestate` are set once by the originator.
_RESERVED: Final = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "datacontenttype",
        "dataschema",
        "subject",
        "data",
        "data_base64",
        "partitionkey",
        "traceparent",
        "tracestate",
    }
)


@dataclass(frozen=True)
class Reply:
    """An event plus the envelope options a handler may choose.

    ``partitionkey`` defaults to the incoming event's; ``subject`` is not inherited;
    ``extensions`` are extra CloudEvents attributes (lowercase ``[a-z0-9]`` names, at most 20
    characters, string values).
    """

    event: Event
    subject: str | None = None
    partitionkey: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.event, Event):
            raise TypeError(f"Reply needs a cascade.Event instance, got {type(self.event)!r}")
        bound_type(type(self.event))
        if self.subject is not None and not self.subject:
            raise ValueError("Reply subject must not be empty (leave it None)")
        if self.partitionkey is not None and not self.partitionkey:
            raise ValueError("Reply partitionkey must not be empty (leave it None)")
        if self.source is not None and not self.source:
            raise ValueError("Reply source must not be empty (leave it None)")
        check_extensions(self.extensions)


def check_extensions(extensions: Mapping[str, str]) -> None:
    for name, value in extensions.items():
        if name in _RESERVED:
            raise ValueError(
                f"extension {name!r} is set by the runtime; use the dedicated argument "
                "(subject=, partitionkey=) or leave it to the runtime"
            )
        problem = extension_name_problem(name)
        if problem:
            raise ValueError(f"extension name {name!r} {problem}")
        if not isinstance(value, str):
            raise TypeError(f"extension {name!r} must be a string, got {type(value).__name__}")


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def outgoing_attributes(
    event: Event,
    *,
    source: str,
    subject: str | None = None,
    partitionkey: str | None = None,
    extensions: Mapping[str, str] | None = None,
    event_id: str | None = None,
) -> dict[str, str]:
    """Wire-form attributes of a new CloudEvent 1.0 carrying ``event`` as JSON data."""
    attributes = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": bound_type(type(event)),
        "time": now_rfc3339(),
        "datacontenttype": "application/json",
    }
    if subject:
        attributes["subject"] = subject
    if partitionkey:
        attributes["partitionkey"] = partitionkey
    if extensions:
        attributes.update(extensions)
    return attributes

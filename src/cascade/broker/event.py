"""The event as the broker stores it: a CloudEvent in binary form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StoredEvent:
    """A CloudEvent as it sits in the log, like a Kafka record in binary content mode.

    ``attributes`` holds every context attribute and extension in its wire (string) form,
    keyed by lowercase name without the ``ce-`` prefix: ``specversion``, ``id``, ``source``,
    ``type``, optional ``datacontenttype``, ``subject``, ``time``, ``dataschema``, and
    extensions such as ``partitionkey`` or ``traceparent``. ``data`` is the body, untouched.
    """

    attributes: Mapping[str, str]
    data: bytes = b""

    @property
    def partition_key(self) -> str | None:
        key = self.attributes.get("partitionkey")
        return key or None


@dataclass(frozen=True)
class Record:
    """One entry of a broker log partition."""

    partition: int
    offset: int
    event: StoredEvent
    # W3C trace context carried beside the event, like Kafka record headers (not ce-* attributes).
    headers: Mapping[str, str] = field(default_factory=dict)

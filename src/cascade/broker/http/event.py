"""CloudEvents on HTTP as the broker sees them: a thin adapter from :mod:`cascade.codec` to the
stored form (:class:`~cascade.broker.event.StoredEvent`), and the size an event counts for.

aiohttp and the broker's own client hand header values over as UTF-8 with surrogate escapes,
the codec's ``"utf-8"`` wire. Every answer to a refused event is a 400 at the broker (Knative's
receiver answers batches and unknown formats 400 too), whatever status the codec suggests.
"""

from __future__ import annotations

from collections.abc import Mapping

from cascade.broker.event import StoredEvent
from cascade.codec import parse_headers

__all__ = ["event_from_http", "event_size"]


def event_from_http(headers: Mapping[str, str], body: bytes) -> StoredEvent:
    """Parse a request or response in binary or structured mode; raise InvalidEvent."""
    message = parse_headers(headers, body)
    return StoredEvent(message.attributes, message.data)


def event_size(event: StoredEvent) -> int:
    """Bytes the event takes as a Kafka record: attribute names and values plus data."""
    size = len(event.data)
    for name, value in event.attributes.items():
        size += len(name) + 3 + len(value.encode("utf-8"))
    return size

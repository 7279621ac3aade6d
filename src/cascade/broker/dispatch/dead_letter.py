"""The event a dead-letter sink receives (§4.2, Kafka column).

All attributes, extensions and data of the delivered event are kept, then:
``knativeerrordest`` (always), ``knativeerrorcode`` (the status as a string, only with a response),
``knativeerrordata`` (base64 of the first 1024 body bytes, only with a non-empty body) and one
extension per ``kne-<name>`` response header (``<name>`` lowercased).

A ``kne-*`` value comes from the failing subscriber and may hold bytes that are not UTF-8 or
control characters; the sink would refuse such an attribute (and the event be lost), so the
value is kept readable instead: undecodable bytes as ``\\xNN``, controls escaped
(:func:`cascade.terminal.printable`). When the broker itself decides why (a malformed answer,
an error of its own), ``reason`` says so.
"""

from __future__ import annotations

import base64
import logging

from cascade.broker.dispatch.delivery import HttpResponse
from cascade.broker.event import StoredEvent
from cascade.codec import is_attribute_name
from cascade.terminal import printable

__all__ = ["ERROR_DATA_LIMIT", "REASON_EXTENSION", "dead_letter_event", "safe_value"]

ERROR_DATA_LIMIT = 1024
REASON_EXTENSION = "reason"  # what a Kne-Reason header becomes; the DLQ tools show it
_KNE_PREFIX = "kne-"
# A kne-* header may add extensions, not rewrite the event's identity or Knative's own fields.
_PROTECTED = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "datacontenttype",
        "dataschema",
        "subject",
        "time",
        "knativeerrordest",
        "knativeerrorcode",
        "knativeerrordata",
    }
)

logger = logging.getLogger(__name__)


def safe_value(value: str) -> str:
    """``value`` as an attribute every receiver accepts: valid UTF-8 (the HTTP client keeps
    undecodable header bytes as surrogate escapes), no control characters."""
    raw = value.encode("utf-8", "surrogateescape")
    return printable(raw.decode("utf-8", "backslashreplace"))


def dead_letter_event(
    event: StoredEvent,
    destination: str,
    response: HttpResponse | None,
    *,
    reason: str | None = None,
) -> StoredEvent:
    """``event`` with the error extensions for a failed delivery to ``destination``.

    ``response`` is the last HTTP response, or None after a transport error, a timeout or a
    malformed reply: then only ``knativeerrordest`` is added, and ``reason`` when given.
    """
    attributes = dict(event.attributes)
    if reason is not None:
        attributes[REASON_EXTENSION] = safe_value(reason)
    attributes["knativeerrordest"] = destination
    if response is not None:
        attributes["knativeerrorcode"] = str(response.status)
        if response.body:
            encoded = base64.b64encode(response.body[:ERROR_DATA_LIMIT])
            attributes["knativeerrordata"] = encoded.decode("ascii")
        for name, value in response.headers.items():
            if not name.lower().startswith(_KNE_PREFIX):
                continue
            extension = name[len(_KNE_PREFIX) :].lower()
            if not is_attribute_name(extension) or extension in _PROTECTED:
                logger.warning(
                    "ignoring response header %r from %s: %r is not a usable extension name",
                    name,
                    destination,
                    extension,
                )
                continue
            attributes[extension] = safe_value(value)
    return StoredEvent(attributes, event.data)

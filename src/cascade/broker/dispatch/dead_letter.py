"""The event a dead-letter sink receives (§4.2, Kafka column).

All attributes, extensions and data of the delivered event are kept, then:
``knativeerrordest`` (always), ``knativeerrorcode`` (the status as a string, only with a response),
``knativeerrordata`` (base64 of the first 1024 body bytes, only with a non-empty body) and one
extension per ``kne-<name>`` response header (``<name>`` lowercased).
"""

from __future__ import annotations

import base64
import logging

from cascade.broker.dispatch.delivery import HttpResponse
from cascade.broker.event import StoredEvent
from cascade.codec import is_attribute_name

__all__ = ["ERROR_DATA_LIMIT", "dead_letter_event"]

ERROR_DATA_LIMIT = 1024
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


def dead_letter_event(
    event: StoredEvent, destination: str, response: HttpResponse | None
) -> StoredEvent:
    """``event`` with the error extensions for a failed delivery to ``destination``.

    ``response`` is the last HTTP response, or None after a transport error, a timeout or a
    malformed reply: then only ``knativeerrordest`` is added.
    """
    attributes = dict(event.attributes)
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
            attributes[extension] = value
    return StoredEvent(attributes, event.data)

"""``CloudEvent``: what a catch-all handler (``@fn.on_any``) gets, any type, any data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cascade.attribute_view import AttributeView
from cascade.codec import is_json_content_type

__all__ = ["CloudEvent"]


@dataclass(frozen=True, slots=True)
class CloudEvent(AttributeView):
    """A received CloudEvent as it came: validated wire-form attributes (``id``, ``source``,
    ``type``, ``time``, ``subject``, ``partitionkey``, ``extensions``, ...) and the data bytes
    exactly as sent (JSON or not)."""

    attributes: Mapping[str, str]
    data: bytes

    @property
    def datacontenttype(self) -> str | None:
        return self.attributes.get("datacontenttype")

    @property
    def is_json(self) -> bool:
        """True when the data is declared JSON (``application/json``, ``+json``, or no
        content type, which CloudEvents reads as JSON)."""
        return is_json_content_type(self.datacontenttype)

    def json(self) -> Any:
        """The data parsed as JSON; ValueError when it is not JSON."""
        try:
            return orjson.loads(self.data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the data of event {self.id!r} is not JSON: {exc}") from None

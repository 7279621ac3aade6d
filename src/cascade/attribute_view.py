"""Read-only properties over a CloudEvent's wire-form attributes, shared by message and context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["CORE_ATTRIBUTES", "AttributeView"]

CORE_ATTRIBUTES: Final = frozenset(
    {"specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "subject"}
)


class AttributeView:
    """Mixin: the required core attributes and ``subject``, read from ``self.attributes``.

    Slot-free so it mixes into both the frozen slotted ``CloudEventMessage`` and ``Context``.
    """

    __slots__ = ()

    attributes: Mapping[str, str]

    @property
    def id(self) -> str:
        return self.attributes["id"]

    @property
    def source(self) -> str:
        return self.attributes["source"]

    @property
    def type(self) -> str:
        return self.attributes["type"]

    @property
    def specversion(self) -> str:
        return self.attributes["specversion"]

    @property
    def subject(self) -> str | None:
        return self.attributes.get("subject")

    @property
    def time(self) -> str | None:
        """The ``time`` attribute as sent (RFC 3339), or None."""
        return self.attributes.get("time")

    @property
    def partitionkey(self) -> str | None:
        return self.attributes.get("partitionkey")

    @property
    def extensions(self) -> dict[str, str]:
        """Every attribute that is not a core CloudEvents attribute."""
        return {k: v for k, v in self.attributes.items() if k not in CORE_ATTRIBUTES}

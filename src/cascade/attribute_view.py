"""Read-only properties over a CloudEvent's wire-form attributes, shared by message and context."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["AttributeView"]


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

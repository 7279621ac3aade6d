"""CloudEvents SQL (CESQL) v1 (work in progress: parsing is not implemented yet)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CesqlError", "Expression", "parse"]


class CesqlError(ValueError):
    """An expression that does not parse."""


class Expression:
    """A parsed CESQL expression."""

    source: str

    def evaluate(self, attributes: Mapping[str, str]) -> tuple[object, list[str]]:
        raise NotImplementedError

    def matches(self, attributes: Mapping[str, str]) -> bool:
        raise NotImplementedError


def parse(expression: str) -> Expression:
    raise CesqlError("CESQL expressions are not supported yet")

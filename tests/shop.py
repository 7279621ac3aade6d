"""The shop's functions, discovered once (``cascade.testing.discover``, the same list ``cascade
run`` and ``cascade catalog`` use) for every suite: adding a function is adding its folder."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Final

from cascade.testing import DiscoveredFunction, discover

__all__ = ["FUNCTIONS", "ROOT", "SHOP", "load"]

ROOT: Final = Path(__file__).resolve().parents[1]
SHOP: Final[dict[str, DiscoveredFunction]] = {f.name: f for f in discover(ROOT / "functions")}
FUNCTIONS: Final = tuple(SHOP)  # by name


def load(name: str) -> ModuleType:
    """functions/<name>/func.py, imported the way ``cascade serve`` does (one module each)."""
    return SHOP[name].module

"""Reading the result JSONs the benchmarks write (bench/_report.py's format), for charts and
the summary: generic over benchmarks, so a new one needs no code here."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench._cli import RESULTS_DIR

__all__ = ["RESULTS_DIR", "load_result", "result_path", "run_values"]


def result_path(name: str, results_dir: Path = RESULTS_DIR, quick: bool = False) -> Path:
    """Where benchmark ``name`` writes its results (``--quick`` runs: ``<name>.quick.json``)."""
    return results_dir / (f"{name}.quick.json" if quick else f"{name}.json")


def load_result(path: Path) -> dict[str, Any]:
    """A result JSON; ValueError if it is not an object with a ``benchmark`` name."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("benchmark"), str):
        raise ValueError(f'{path} is not a benchmark result (no "benchmark" name)')
    return data


def run_values(row: Mapping[str, Any], metric: str) -> list[float]:
    """``metric`` of each of a row's runs (those that have it)."""
    runs: Sequence[Mapping[str, Any]] = row.get("runs") or []
    return [float(r[metric]) for r in runs if isinstance(r.get(metric), int | float)]

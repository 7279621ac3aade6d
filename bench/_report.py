"""Medians, ratios against same-run baselines, PASS/MISS verdicts, markdown and JSON output."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from bench._load import Measurement

__all__ = [
    "Floor",
    "Limit",
    "Ratio",
    "interleaved",
    "machine_info",
    "markdown_table",
    "medians",
    "noise_note",
    "percentile",
    "progress",
    "run_interleaved",
    "source_revision",
    "spread",
    "utc_now",
    "write_json",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator`` of two medians measured in the same run."""

    name: str
    numerator: str
    denominator: str
    value: float
    target: float | None = None  # minimum acceptable value, if there is one

    @classmethod
    def of(
        cls,
        name: str,
        numerator: tuple[str, float],
        denominator: tuple[str, float],
        target: float | None = None,
    ) -> Ratio:
        (num_name, num), (den_name, den) = numerator, denominator
        value = num / den if den > 0 else 0.0
        return cls(name, num_name, den_name, value, target)

    @property
    def verdict(self) -> str:
        """PASS or MISS against the target; ``-`` when the ratio has no target."""
        if self.target is None:
            return "-"
        return "PASS" if self.value >= self.target else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass(frozen=True)
class Limit:
    """A same-run difference with a ceiling, e.g. the CPU µs one feature adds per request."""

    name: str
    value: float
    limit: float
    unit: str

    @property
    def verdict(self) -> str:
        return "PASS" if self.value <= self.limit else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass(frozen=True)
class Floor:
    """A figure with a minimum, e.g. confirmed orders/s through the whole shop."""

    name: str
    value: float
    floor: float
    unit: str

    @property
    def verdict(self) -> str:
        return "PASS" if self.value >= self.floor else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 for no values); ``p`` = 100 is the maximum."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def medians(samples: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-key median over runs (keys missing from a run are left out of that key's median)."""
    keys: list[str] = []
    for sample in samples:
        keys += [k for k in sample if k not in keys]
    return {k: statistics.median([s[k] for s in samples if k in s]) for k in keys}


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: how much a row moved between runs (0 for fewer than 2 runs)."""
    if len(values) < 2:
        return 0.0
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid else 0.0


NOISY_SPREAD = 0.5


def noise_note(name: str, values: Sequence[float]) -> str | None:
    """A warning line when the baseline moved so much between runs that verdicts are shaky."""
    moved = spread(values)
    if moved <= NOISY_SPREAD:
        return None
    return (
        f"NOTE: {name} moved by {moved:.0%} of its median between runs (load average "
        f"{os.getloadavg()[0]:.1f}): the machine is busy, so ratios and verdicts are noisy; "
        "compare the CPU figures or rerun with more --runs"
    )


def interleaved(names: Sequence[str], runs: int) -> list[tuple[int, str]]:
    """Run order A,B,C,A,B,C,...: noise on shared cores hits every target alike."""
    return [(run, name) for run in range(1, runs + 1) for name in names]


def progress(message: str) -> None:
    print(message, flush=True)


def run_interleaved(
    names: Sequence[str], runs: int, measure: Callable[[str, int], T]
) -> dict[str, list[T]]:
    """Call ``measure(name, run)`` in interleaved order; results grouped by name, in run order."""
    results: dict[str, list[T]] = {name: [] for name in names}
    schedule = interleaved(names, runs)
    for step, (run, name) in enumerate(schedule, start=1):
        progress(f"--> [{step}/{len(schedule)}] run {run}/{runs}: {name}")
        results[name].append(measure(name, run))
    return results


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table; the first column left-aligned, the others right."""
    all_rows = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * w if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)]
    return "\n".join(
        [line(all_rows[0]), "|" + "|".join(f" {r} " for r in rule) + "|"]
        + [line(r) for r in all_rows[1:]]
    )


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def machine_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def source_revision(repo: Path) -> dict[str, Any]:
    """The commit measured, and whether the work tree had local changes (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    # Results a run writes (bench/results) do not make the code it measures dirty.
    status = git(
        "status", "--porcelain", "--untracked-files=no", "--", "src", "bench", ":!bench/results"
    )
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Write atomically (a ``.tmp`` beside it, then rename), so a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def result_header(name: str, elapsed: float, options: Any, repo: Path) -> dict[str, Any]:
    """What every result JSON starts with: which benchmark, when, where, which commit, how."""
    return {
        "benchmark": name,
        "date": utc_now(),
        "elapsed_s": round(elapsed, 1),
        "machine": machine_info(),
        "source": source_revision(repo),
        "settings": {
            "duration_s": options.duration_s,
            "runs": options.runs,
            "connections": options.connections,
            "wrk_threads": options.threads,
            "warmup_s": options.warmup_s,
        },
    }


def row_result(
    key: str,
    label: str,
    expected_status: int,
    measurements: Sequence[Measurement],
    **extra: Any,
) -> dict[str, Any]:
    """One load row of a result JSON: its medians, spread, errors and every run."""
    samples = [m.sample() for m in measurements]
    return {
        "key": key,
        "label": label,
        **extra,
        "expected_status": expected_status,
        "median": medians(samples),
        "spread_requests_per_s": round(spread([s["requests_per_s"] for s in samples]), 3),
        "errors": sum(m.errors for m in measurements),
        "one_worker_runs_set_aside": set_aside(measurements),
        "runs": [m.as_dict() for m in measurements],
    }


def set_aside(measurements: Sequence[Measurement]) -> int:
    """How many attempts of these runs one worker served alone (measured again instead)."""
    return sum(len(m.redone) for m in measurements)


def finish(path: Path, payload: Mapping[str, Any], elapsed: float, failure: str | None) -> int:
    """Write the result JSON, say where, and turn a failure into exit status 1."""
    write_json(path, payload)
    progress(f"==> wrote {path} ({elapsed:.0f}s)")
    if failure:
        print(f"ERROR: {failure}", file=sys.stderr)
        return 1
    return 0


def failed_requests(count: int) -> str | None:
    """The failure of a load benchmark whose requests failed, for ``finish``."""
    return f"{count} failed requests (see the errors column)" if count else None

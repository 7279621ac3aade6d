"""The last word of ``make bench``: every target of every benchmark, PASS or MISS, in one list.

Reads ``bench/results/<name>.json`` of each benchmark named (``--quick``: ``<name>.quick.json``)
and prints one line per target (a ratio with a target, a limit or a floor; bench/_report.py)
with its verdict and figure, a ``not run`` line for a benchmark without results (or with
results older than ``--since``), a NOTE where a ratio's baseline row moved between runs by more
than bench/_report.py's noise threshold, and last how many targets passed. Generic: no
benchmark's rows are named here.

Exit status 1 when a named benchmark has no (fresh, readable) results; a MISS is not an error.

``python -m bench.summary [--quick] [--since TIME] [--results DIR] [NAME ...]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._report import NOISY_SPREAD
from bench._results import RESULTS_DIR, load_result, result_path

__all__ = ["Summary", "main", "summarize"]

_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass
class Summary:
    lines: list[str]
    passed: int
    targets: int
    not_run: list[str]

    @property
    def final_line(self) -> str:
        missed = self.targets - self.passed
        text = f"{self.passed} of {self.targets} targets passed"
        text += f" ({missed} MISS)" if missed else ""
        if self.not_run:
            text += f"; not run: {', '.join(self.not_run)}"
        return text


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC)."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _fmt(value: float) -> str:
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _target(entry: Mapping[str, Any]) -> tuple[str, float, str] | None:
    """(comparison, bound, unit) of a check: ratio ``target`` and ``floor`` are minimums,
    ``limit`` a maximum; None for an entry without a numeric bound (information only)."""
    unit = str(entry.get("unit", "x")) if "unit" in entry else "x"
    for key, comparison in (("target", ">="), ("floor", ">="), ("limit", "<=")):
        bound = _number(entry.get(key))
        if bound is not None:
            return comparison, bound, unit
    return None


def target_lines(name: str, result: Mapping[str, Any]) -> list[tuple[bool, str]]:
    """(passed, line) per target of one result: its ``ratios`` with a target, ``limits`` (a
    ceiling) and ``checks`` (bench/_report.py's Floor, Limit or Ratio), in that order."""
    out: list[tuple[bool, str]] = []
    for kind in ("ratios", "limits", "checks"):
        entries = result.get(kind)
        for q in entries if isinstance(entries, list) else []:
            if not isinstance(q, Mapping):
                continue
            value, target = _number(q.get("value")), _target(q)
            if value is None or target is None:
                continue
            comparison, bound, unit = target
            passed = value >= bound if comparison == ">=" else value <= bound
            word = "target" if comparison == ">=" else "limit"
            if unit == "x":
                figure, wanted = f"{value:.2f}x", f"{word} {comparison} {bound:g}x"
            else:
                figure, wanted = f"{_fmt(value)} {unit}", f"{word} {comparison} {bound:g} {unit}"
            verdict = "PASS" if passed else "MISS"
            out.append((passed, f"{verdict}  {name}: {q.get('name')} = {figure} ({wanted})"))
    return out


def noise_notes(name: str, result: Mapping[str, Any]) -> list[str]:
    """A NOTE per baseline row of a targeted ratio whose req/s moved more than NOISY_SPREAD."""
    rows = {r.get("key"): r for r in result.get("rows") or [] if isinstance(r, Mapping)}
    load = (result.get("machine") or {}).get("load_average_1m")
    notes, seen = [], set()
    for q in result.get("ratios") or []:
        baseline = q.get("denominator")
        if _number(q.get("target")) is None or baseline in seen or baseline not in rows:
            continue
        seen.add(baseline)
        moved = _number(rows[baseline].get("spread_requests_per_s"))
        if moved is not None and moved > NOISY_SPREAD:
            notes.append(
                f"NOTE: {name}: the baseline {baseline} moved by {moved:.0%} of its median "
                f"between runs"
                + (f" (load average {load} at the end)" if load is not None else "")
                + ": verdicts against it are noisy; rerun on a quieter machine or with more --runs"
            )
    notes += [f"NOTE: {name}: {n}" for n in result.get("notes") or [] if isinstance(n, str)]
    return notes


def summarize(
    names: Sequence[str],
    results_dir: Path = RESULTS_DIR,
    *,
    quick: bool = False,
    since: dt.datetime | None = None,
) -> Summary:
    summary = Summary([], 0, 0, [])
    notes: list[str] = []
    for name in names:
        path = result_path(name, results_dir, quick)
        why_not = None
        result: dict[str, Any] = {}
        if not path.exists():
            why_not = f"no {path}"
        else:
            try:
                result = load_result(path)
            except (OSError, ValueError) as exc:
                why_not = f"unreadable {path}: {exc}"
        if why_not is None and since is not None:
            date = str(result.get("date", ""))
            try:
                fresh = parse_time(date) >= since
            except argparse.ArgumentTypeError:
                fresh = False
            if not fresh:
                why_not = f"{path} is from {date or 'an unknown time'}, before this run"
        if why_not is not None:
            summary.not_run.append(name)
            summary.lines.append(f"----  {name}: not run ({why_not})")
            continue
        lines = target_lines(name, result)
        if not lines:
            summary.lines.append(f"----  {name}: no targets in its results")
        for passed, line in lines:
            summary.lines.append(line)
            summary.targets += 1
            summary.passed += passed
        errors = _number(result.get("errors"))
        if errors:
            notes.append(f"NOTE: {name}: {errors:.0f} errors in this run (see {path})")
        notes += noise_notes(name, result)
    summary.lines += notes
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.summary",
        description="One line per benchmark target with PASS/MISS and its figure.",
    )
    parser.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="benchmarks whose results to read, e.g. function_throughput broker_throughput",
    )
    parser.add_argument(
        "--quick", action="store_true", help="read the --quick results (<name>.quick.json)"
    )
    parser.add_argument(
        "--since",
        type=parse_time,
        metavar="TIME",
        help="ISO 8601 time the run started: older results count as not run",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        metavar="DIR",
        help="the results folder (default bench/results)",
    )
    args = parser.parse_args(argv)
    for name in args.names:
        if not _NAME.match(name):
            parser.error(f"{name!r} is not a benchmark name (lowercase letters, digits, _)")
    summary = summarize(args.names, args.results, quick=args.quick, since=args.since)
    print("\n## Summary: targets of this run\n")
    print("\n".join(summary.lines))
    print(summary.final_line, flush=True)
    return 1 if summary.not_run else 0


if __name__ == "__main__":
    sys.exit(main())

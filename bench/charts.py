"""PNG charts of benchmark results, written next to their JSON in bench/results/.

Per result ``<name>.json`` (or ``<name>.quick.json``), each chart that its content allows:
  <name>.throughput.png  median rates of every row (each ``*_per_s`` figure), runs' min-max
  <name>.ratios.png      every ratio as a bar, its target drawn, coloured by verdict; one
                         panel per limit or floor (value against its bound)
  <name>.latency.png     latency percentiles per row (delivery latency where the rows have
                         it, else request latency), log scale
  <name>.scaling.png     req/s over gunicorn workers per series (rows with ``series`` and
                         ``workers``), and RSS per worker against an MB limit
Generic over the results format of bench/_report.py: no benchmark's rows are named here.

``python -m bench.charts [--quick] [--results DIR] [NAME ...]`` (default: every result there)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server, same output everywhere

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bench._results import RESULTS_DIR, load_result, result_path, run_values  # noqa: E402

__all__ = [
    "draw_latency",
    "draw_ratios",
    "draw_scaling",
    "draw_throughput",
    "latency_percentiles",
    "main",
    "write_charts",
]

VERDICT_COLOURS = {"PASS": "#2e7d32", "MISS": "#c62828", "-": "#90a4ae"}
TARGET_COLOUR = "#212121"
_DELIVERY = re.compile(r"^delivery_p(\d+(?:_\d+)?)_ms$")
_REQUEST = re.compile(r"^p(\d+(?:_\d+)?)_ms$")
# Result names as the benchmarks write them: no dots (those are variants) nor dashes (chaos).
_RESULT_NAME = re.compile(r"^[a-z0-9_]+$")

Chart = Callable[[Mapping[str, Any]], Figure | None]


def _rows(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = result.get("rows")
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def _label(row: Mapping[str, Any]) -> str:
    return str(row.get("label") or row.get("key") or "?")


def _median(row: Mapping[str, Any]) -> Mapping[str, Any]:
    median = row.get("median")
    return median if isinstance(median, Mapping) else {}


def _title(result: Mapping[str, Any], what: str) -> str:
    date = result.get("date", "")
    commit = str((result.get("source") or {}).get("commit") or "")[:7]
    return f"{result['benchmark']}: {what}" + (f"\n{date} {commit}".rstrip() if date else "")


def _height(rows: float) -> float:
    return 1.6 + 0.42 * rows


def draw_throughput(result: Mapping[str, Any]) -> Figure | None:
    """Horizontal bars of each row's median rates, with the runs' min-max as error bars."""
    rows = _rows(result)
    metrics: list[str] = []
    for row in rows:
        metrics += [
            k
            for k, v in _median(row).items()
            if k.endswith("_per_s") and isinstance(v, int | float) and k not in metrics
        ]
    if not rows or not metrics:
        return None
    fig = Figure(figsize=(11, _height(len(rows) * len(metrics) / 1.5)), layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 / len(metrics)
    for m, metric in enumerate(metrics):
        ys, values, low, high = [], [], [], []
        for i, row in enumerate(rows):
            value = _median(row).get(metric)
            if not isinstance(value, int | float):
                continue
            runs = run_values(row, metric) or [float(value)]
            ys.append(i - 0.4 + height * (m + 0.5))
            values.append(float(value))
            low.append(max(0.0, float(value) - min(runs)))
            high.append(max(0.0, max(runs) - float(value)))
        ax.barh(
            ys, values, height=height, xerr=[low, high], label=metric.replace("_", " "), capsize=2
        )
        for y, v, h in zip(ys, values, high, strict=True):
            ax.text(v + h, y, f" {v:,.0f}", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("per second (median of runs; bars: min-max of runs)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(_title(result, "throughput"), fontsize=10)
    return fig


def _checks(result: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    items = result.get(kind)
    if not isinstance(items, list):
        return []
    return [q for q in items if isinstance(q, Mapping) and isinstance(q.get("value"), int | float)]


def _bounded(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Limits (a ceiling) and floors (a minimum with a unit), from ``limits`` and ``checks``."""
    return [
        q
        for q in _checks(result, "limits") + _checks(result, "checks")
        if isinstance(q.get("limit"), int | float) or isinstance(q.get("floor"), int | float)
    ]


def draw_ratios(result: Mapping[str, Any]) -> Figure | None:
    """Each ratio as a bar with its target line; each limit or floor in a panel of its own."""
    ratios, limits = _checks(result, "ratios"), _bounded(result)
    if not ratios and not limits:
        return None
    heights = ([max(2.0, 0.4 * len(ratios))] if ratios else []) + [0.9] * len(limits)
    fig = Figure(figsize=(11, 1.4 + sum(heights)), layout="constrained")
    axes: list[Axes] = list(
        fig.subplots(len(heights), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    )
    if ratios:
        ax = axes.pop(0)
        ys = range(len(ratios))
        values = [float(q["value"]) for q in ratios]
        colours = [VERDICT_COLOURS.get(str(q.get("verdict")), VERDICT_COLOURS["-"]) for q in ratios]
        ax.barh(ys, values, color=colours, height=0.6)
        for y, q, v in zip(ys, ratios, values, strict=True):
            target = q.get("target")
            text = f" {v:.2f}x"
            if isinstance(target, int | float):
                ax.vlines(float(target), y - 0.42, y + 0.42, colors=TARGET_COLOUR, linewidth=2)
                text += f"  (target >= {target:g}x: {q.get('verdict')})"
            ax.text(v, y, text, va="center", fontsize=7)
        ax.axvline(1.0, color="#9e9e9e", linewidth=0.8, linestyle=":")
        ax.set_yticks(list(ys), [str(q.get("name", "?")) for q in ratios], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(
            0,
            max(
                [
                    *values,
                    *(
                        float(q["target"])
                        for q in ratios
                        if isinstance(q.get("target"), int | float)
                    ),
                ]
            )
            * 1.35,
        )
        ax.set_xlabel("ratio of same-run medians (black line: target, bar colour: verdict)")
        ax.set_title(_title(result, "ratios and targets"), fontsize=10)
    for ax, q in zip(axes, limits, strict=True):
        is_floor = isinstance(q.get("floor"), int | float)
        value, bound = float(q["value"]), float(q["floor"] if is_floor else q["limit"])
        unit = str(q.get("unit", ""))
        verdict = str(q.get("verdict", "-"))
        ax.barh([0], [value], color=VERDICT_COLOURS.get(verdict, VERDICT_COLOURS["-"]), height=0.6)
        ax.vlines(bound, -0.42, 0.42, colors=TARGET_COLOUR, linewidth=2)
        ax.set_xlim(0, max(value, bound, 1e-9) * 1.35)
        ax.set_yticks([0], [str(q.get("name", "?"))], fontsize=8)
        wanted = f"target >= {bound:g}" if is_floor else f"limit <= {bound:g}"
        ax.text(value, 0, f" {value:,.1f} {unit} ({wanted}: {verdict})", va="center", fontsize=7)
        ax.set_xlabel(unit, fontsize=8)
    return fig


def latency_percentiles(row: Mapping[str, Any]) -> tuple[str, dict[float, float]]:
    """(``delivery`` or ``request``, {percentile: ms}) of a row's medians; delivery wins."""
    median = _median(row)
    for kind, pattern in (("delivery", _DELIVERY), ("request", _REQUEST)):
        found = {
            float(match.group(1).replace("_", ".")): float(v)
            for k, v in median.items()
            if (match := pattern.match(k)) and isinstance(v, int | float)
        }
        if found:
            return kind, dict(sorted(found.items()))
    return "", {}


def draw_latency(result: Mapping[str, Any]) -> Figure | None:
    """Per row, its latency percentiles as markers on one log-scale line."""
    found = [(row, *latency_percentiles(row)) for row in _rows(result)]
    kinds = {kind for _, kind, points in found if points}
    if not kinds:
        return None
    kind = "delivery" if "delivery" in kinds else "request"
    rows = [(row, points) for row, k, points in found if k == kind and any(points.values())]
    if not rows:
        return None
    percentiles = sorted({p for _, points in rows for p in points})
    markers = "o^sDv<>Ph*"
    fig = Figure(figsize=(11, _height(len(rows))), layout="constrained")
    ax = fig.add_subplot()
    for y, (_, points) in enumerate(rows):
        positive = [v for v in points.values() if v > 0]
        if positive:
            ax.hlines(y, min(positive), max(positive), colors="#b0bec5", linewidth=3)
    for i, p in enumerate(percentiles):
        ys = [y for y, (_, points) in enumerate(rows) if points.get(p, 0) > 0]
        xs = [rows[y][1][p] for y in ys]
        ax.scatter(xs, ys, marker=markers[i % len(markers)], s=28, zorder=3, label=f"p{p:g}")
    ax.set_xscale("log")
    ax.set_yticks(range(len(rows)), [_label(r) for r, _ in rows], fontsize=8)
    ax.invert_yaxis()
    what = "send -> receipt at the subscriber" if kind == "delivery" else "request (wrk)"
    ax.set_xlabel(f"{kind} latency, ms, log scale ({what}; median of runs)")
    ax.legend(
        fontsize=8,
        ncols=min(len(percentiles), 8),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12 - 0.6 / len(rows)),
    )
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_title(_title(result, f"{kind} latency distribution"), fontsize=10)
    return fig


def draw_scaling(result: Mapping[str, Any]) -> Figure | None:
    """req/s over workers per series; RSS per worker over workers when rows have memory."""
    series: dict[str, list[Mapping[str, Any]]] = {}
    for row in _rows(result):
        if isinstance(row.get("series"), str) and isinstance(row.get("workers"), int):
            series.setdefault(row["series"], []).append(row)
    if not series:
        return None
    has_memory = any(isinstance(r.get("memory"), Mapping) for rs in series.values() for r in rs)
    fig = Figure(figsize=(11 if has_memory else 7, 4.8), layout="constrained")
    axes = fig.subplots(1, 2 if has_memory else 1, squeeze=False)[0]
    ax = axes[0]
    for name, rows in series.items():
        rows = sorted(rows, key=lambda r: int(r["workers"]))
        xs = [int(r["workers"]) for r in rows]
        ys = [float(_median(r).get("requests_per_s", 0.0)) for r in rows]
        runs = [run_values(r, "requests_per_s") or [y] for r, y in zip(rows, ys, strict=True)]
        err = [
            [y - min(rs) for y, rs in zip(ys, runs, strict=True)],
            [max(rs) - y for y, rs in zip(ys, runs, strict=True)],
        ]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
    ax.set_xlabel("gunicorn workers")
    ax.set_ylabel("req/s (median of runs; bars: min-max)")
    ax.set_ylim(bottom=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    ax.set_title(_title(result, "throughput over workers"), fontsize=10)
    if has_memory:
        mem_ax = axes[1]
        for name, rows in series.items():
            points = sorted(
                (int(r["workers"]), max(r["memory"].get("workers_mb") or [0.0]))
                for r in rows
                if isinstance(r.get("memory"), Mapping)
            )
            mem_ax.plot([x for x, _ in points], [y for _, y in points], marker="s", label=name)
        for q in _checks(result, "limits"):
            if q.get("unit") == "MB":
                mem_ax.axhline(
                    float(q["limit"]),
                    color=TARGET_COLOUR,
                    linestyle="--",
                    label=f"limit {q['limit']:g} MB ({q.get('verdict')})",
                )
        mem_ax.set_xlabel("gunicorn workers")
        mem_ax.set_ylabel("largest worker's RSS after load, MB")
        mem_ax.set_ylim(bottom=0)
        mem_ax.xaxis.get_major_locator().set_params(integer=True)
        mem_ax.legend(fontsize=8)
        mem_ax.set_title("memory per worker (VmRSS)", fontsize=10)
    return fig


CHARTS: dict[str, Chart] = {
    "throughput": draw_throughput,
    "ratios": draw_ratios,
    "latency": draw_latency,
    "scaling": draw_scaling,
}


def write_charts(json_path: Path) -> list[Path]:
    """Every chart the result at ``json_path`` allows, as PNGs beside it; their paths."""
    result = load_result(json_path)
    stem = json_path.name.removesuffix(".json")
    written = []
    for kind, draw in CHARTS.items():
        fig = draw(result)
        if fig is None:
            continue
        out = json_path.with_name(f"{stem}.{kind}.png")
        FigureCanvasAgg(fig)
        fig.savefig(out, dpi=100)
        written.append(out)
    return written


def default_names(results_dir: Path) -> list[str]:
    return sorted(
        p.name.removesuffix(".json")
        for p in results_dir.glob("*.json")
        if _RESULT_NAME.match(p.name.removesuffix(".json"))
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.charts", description="PNG charts of benchmark results."
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="benchmarks to draw, e.g. function_throughput (default: every "
        "<name>.json in the results folder)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="draw the --quick results (<name>.quick.json)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        metavar="DIR",
        help="the results folder (default bench/results)",
    )
    args = parser.parse_args(argv)
    names = args.names or default_names(args.results)
    status = 0
    for name in names:
        if not _RESULT_NAME.match(name):
            print(f"charts: {name!r} is not a benchmark name", file=sys.stderr)
            status = 1
            continue
        path = result_path(name, args.results, args.quick)
        if not path.exists():
            print(f"charts: {name}: not run (no {path})", flush=True)
            continue
        try:
            written = write_charts(path)
        except (OSError, ValueError) as exc:
            print(f"charts: {name}: cannot read {path}: {exc}", file=sys.stderr)
            status = 1
            continue
        for out in written:
            print(f"charts: wrote {out}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

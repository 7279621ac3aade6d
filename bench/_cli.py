"""Command-line flags shared by the benchmarks."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FULL",
    "QUICK",
    "Options",
    "Profile",
    "add_out_flag",
    "build_parser",
    "options_from",
    "parse_options",
    "results_path",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Profile:
    """Defaults of a run kind; explicit flags override any of them."""

    duration_s: float
    runs: int
    warmup_s: float


FULL = Profile(duration_s=8.0, runs=5, warmup_s=2.0)
QUICK = Profile(duration_s=2.0, runs=3, warmup_s=1.0)


@dataclass(frozen=True)
class Options:
    duration_s: float
    connections: int
    threads: int
    runs: int
    warmup_s: float
    workers: int
    quick: bool
    out: Path


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def parse_options(name: str, description: str, argv: Sequence[str] | None = None) -> Options:
    """Parse the flags; ``--quick`` picks the smoke-run profile, explicit flags win over it."""
    return options_from(build_parser(name, description).parse_args(argv), name)


DEFAULT_WORKERS = 2


def build_parser(
    name: str, description: str, *, workers_flag: bool = True
) -> argparse.ArgumentParser:
    """The shared flags; a benchmark may add its own before parsing.

    ``workers_flag=False`` leaves ``--workers N`` out, for a benchmark that sets the worker
    counts itself (bench.function_scaling).
    """
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run (~1 minute): {QUICK.runs} runs of {QUICK.duration_s:g}s per target",
    )
    parser.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help=f"length of each measured wrk run (default {FULL.duration_s:g}, quick "
        f"{QUICK.duration_s:g}; wrk rounds to whole seconds)",
    )
    parser.add_argument(
        "--connections",
        type=_positive_int,
        default=16,
        metavar="N",
        help="concurrent wrk connections (default 16)",
    )
    parser.add_argument(
        "--threads", type=_positive_int, default=1, metavar="N", help="wrk threads (default 1)"
    )
    parser.add_argument(
        "--runs",
        type=_positive_int,
        metavar="N",
        help=f"interleaved runs per target; medians are reported (default {FULL.runs})",
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative_float,
        metavar="SECONDS",
        help="unmeasured load on each target before the runs (default "
        f"{FULL.warmup_s:g}, quick {QUICK.warmup_s:g}; 0 skips it)",
    )
    if workers_flag:
        parser.add_argument(
            "--workers",
            type=_positive_int,
            default=DEFAULT_WORKERS,
            metavar="N",
            help=f"gunicorn workers for every server under test (default {DEFAULT_WORKERS})",
        )
    add_out_flag(parser, name)
    return parser


def add_out_flag(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out PATH``; :func:`results_path` gives its default."""
    parser.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help=f"where to write the JSON results (default bench/results/{name}.json, "
        f"quick runs bench/results/{name}.quick.json)",
    )


def results_path(out: Path | None, name: str, quick: bool) -> Path:
    """``--out`` when given, else ``bench/results/<name>[.quick].json``."""
    return out or RESULTS_DIR / (f"{name}.quick.json" if quick else f"{name}.json")


def options_from(args: argparse.Namespace, name: str) -> Options:
    """The shared flags of parsed ``args``, with the profile's defaults filled in."""
    profile = QUICK if args.quick else FULL
    return Options(
        duration_s=args.duration if args.duration is not None else profile.duration_s,
        connections=args.connections,
        threads=args.threads,
        runs=args.runs if args.runs is not None else profile.runs,
        warmup_s=args.warmup if args.warmup is not None else profile.warmup_s,
        workers=getattr(args, "workers", DEFAULT_WORKERS),
        quick=args.quick,
        out=results_path(args.out, name, args.quick),
    )

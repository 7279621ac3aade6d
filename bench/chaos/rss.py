"""Resident memory of every process of the run, sampled from /proc (Linux).

A process of the run is the broker or a function's gunicorn master with its workers: its
process group (``cascade run`` starts each child as a group leader). Each sample records the
RSS of every group and how many events the broker's log held then; growth per 10k events is
measured per process instance (a restart starts a new one) over the instance that saw the
most events, after a warm-up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RssSampler", "group_rss_kib"]

MIN_SPAN = 2000  # events an instance must see before its growth is reported
START_SAMPLES = 10  # samples of a new instance left out: it is still importing and forking


def _groups() -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        groups.setdefault(int(fields[2]), []).append(int(entry.name))
    return groups


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_rss_kib(leaders: dict[str, int]) -> dict[str, int]:
    """name -> summed RSS (KiB) of the process group led by that PID."""
    groups = _groups()
    return {name: sum(_rss_kib(p) for p in groups.get(pid, [])) for name, pid in leaders.items()}


@dataclass
class RssSampler:
    leaders: Callable[[], dict[str, int]]  # name -> group leader PID, read from run.json
    events: Callable[[], int]  # events in the broker's log now
    interval: float = 2.0
    samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                leaders = self.leaders()
            except (OSError, ValueError, KeyError):
                continue  # run.json is being rewritten: next time
            rss = group_rss_kib(leaders)
            try:
                events: int | None = self.events()
            except (OSError, ValueError, KeyError, IndexError):
                events = None  # the broker is restarting or slow to answer: RSS only
            self.samples.append({"events": events, "pids": leaders, "rss_kib": rss})

    def report(self, warmup_events: int) -> dict[str, Any]:
        """Per process: peak and last RSS, and growth per 10k events of the instance that saw the
        most events after the warm-up, its first samples (start-up) left out."""
        result: dict[str, Any] = {}
        names = sorted({name for sample in self.samples for name in sample["rss_kib"]})
        for name in names:
            instances: dict[int, list[tuple[int, int]]] = {}
            for sample in self.samples:
                if sample["events"] is None:
                    continue
                if name in sample["rss_kib"] and sample["rss_kib"][name] > 0:
                    pid = sample["pids"][name]
                    instances.setdefault(pid, []).append(
                        (sample["events"], sample["rss_kib"][name])
                    )
            values = [s["rss_kib"][name] for s in self.samples if s["rss_kib"].get(name)]
            best: list[tuple[int, int]] = []
            for points in instances.values():
                started = points[START_SAMPLES:]
                warm = [p for p in started if p[0] >= warmup_events]
                if len(warm) < 2:
                    continue
                if not best or warm[-1][0] - warm[0][0] > best[-1][0] - best[0][0]:
                    best = warm
            span = best[-1][0] - best[0][0] if best else 0
            # Over a few hundred events a slope is noise (allocator arenas, caches warming).
            growth = (best[-1][1] - best[0][1]) * 10_000 / span if span >= MIN_SPAN else None
            result[name] = {
                "instances": len(instances),
                "peak_mib": round(max(values) / 1024, 1) if values else None,
                "last_mib": round(values[-1] / 1024, 1) if values else None,
                "growth_mib_per_10k_events": None if growth is None else round(growth / 1024, 2),
                "measured_over_events": span,
            }
        result["samples"] = self.samples  # every sample, to compute anything else afterwards
        return result

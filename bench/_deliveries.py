"""What a benchmark subscriber received, per run: distinct ids, duplicates, delivery latency.

Both subscribers feed the same :class:`RunStats`. The aiohttp subscriber keeps them in its
process and answers ``GET /stats``. The Cascade subscriber (``cascade serve``, several gunicorn
workers) appends one line per delivery to a file of its own per worker process,
``<ce-id> <sent-us|-> <received-us>``, and :class:`DeliveryFiles` reads those files back:
exact across workers, one small ``write`` per delivery in the subscriber.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._report import percentile

__all__ = [
    "DELIVERY_DIR_ENV",
    "LATENCY_PERCENTILES",
    "DeliveryFiles",
    "RunStats",
    "delivery_line",
    "percentile_key",
    "run_of",
    "worker_file",
]

# Where the Cascade subscriber's workers write their delivery files.
DELIVERY_DIR_ENV = "BENCH_DELIVERY_DIR"
# Delivery-latency percentiles kept per run: enough points to draw the distribution
# (bench.charts); the key of 99.9 is "p99_9".
LATENCY_PERCENTILES = (10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9)


def percentile_key(p: float) -> str:
    return "p" + f"{p:g}".replace(".", "_")


def run_of(ce_id: str) -> str:
    """The run an event belongs to: its ``ce-id`` up to the first ``-`` (see fresh_run_id)."""
    return ce_id.partition("-")[0]


def delivery_line(ce_id: str, sent_us: str | None, received_us: int) -> bytes:
    """One delivery as the Cascade subscriber writes it (ids never hold spaces or newlines)."""
    return f"{ce_id} {sent_us if sent_us and sent_us.isdigit() else '-'} {received_us}\n".encode()


@dataclass
class RunStats:
    ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    latencies_us: list[int] = field(default_factory=list)
    first_sent_us: int = 0
    last_received_us: int = 0

    def record(self, ce_id: str, sent_us: int | None, received_us: int) -> None:
        if ce_id in self.ids:
            self.duplicates += 1
            return
        self.ids.add(ce_id)
        self.last_received_us = max(self.last_received_us, received_us)
        if sent_us is not None:
            self.latencies_us.append(received_us - sent_us)
            if not self.first_sent_us or sent_us < self.first_sent_us:
                self.first_sent_us = sent_us

    def summary(self) -> dict[str, Any]:
        def pct(p: float) -> float:
            return percentile(self.latencies_us, p) / 1000.0

        return {
            "unique": len(self.ids),
            "duplicates": self.duplicates,
            "first_sent_us": self.first_sent_us,
            "last_received_us": self.last_received_us,
            "latency_ms": {
                **{percentile_key(p): pct(p) for p in LATENCY_PERCENTILES},
                "max": pct(100),
            },
        }


class DeliveryFiles:
    """Follows every delivery file in ``directory``, reading only what was appended since."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}
        self._runs: dict[str, RunStats] = {}
        self.malformed = 0  # lines that do not parse: a subscriber bug, reported as errors

    def stats(self, run_id: str) -> dict[str, Any]:
        """The summary of ``run_id`` after reading everything written so far."""
        self.poll()
        return self._runs.get(run_id, RunStats()).summary()

    def poll(self) -> None:
        for path in sorted(self.directory.glob("*.deliveries")):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            if not chunk:
                continue
            self._offsets[path] = offset + len(chunk)
            # A line being written right now stays in the buffer until its newline arrives.
            data = self._partial.pop(path, b"") + chunk
            lines = data.split(b"\n")
            if lines[-1]:
                self._partial[path] = lines[-1]
            for line in lines[:-1]:
                self._record(line)

    def _record(self, line: bytes) -> None:
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].isdigit() or not parts[0].isascii():
            self.malformed += 1
            return
        ce_id = parts[0].decode("ascii")
        sent_us = int(parts[1]) if parts[1].isdigit() else None
        self._runs.setdefault(run_of(ce_id), RunStats()).record(ce_id, sent_us, int(parts[2]))


def worker_file(directory: Path) -> Path:
    """The delivery file of the calling process."""
    return directory / f"{os.getpid()}.deliveries"

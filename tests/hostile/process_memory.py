"""Memory of a process under test, read from ``/proc`` (Linux)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["peak_rss_bytes", "rss_bytes"]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def rss_bytes(pid: int) -> int:
    """Resident set size now."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The highest resident set size the process has had (VmHWM): a spike between two
    samples is not missed."""
    return _status_kib(pid, "VmHWM") * 1024

"""Memory of server processes from /proc: the workers of a gunicorn master and their RSS."""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["child_pids", "rss_bytes", "status_kib"]


def child_pids(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The direct children of ``pid`` (a gunicorn master's are its workers), sorted."""
    kids: list[int] = []
    for task in (proc / str(pid) / "task").glob("*/children"):
        with contextlib.suppress(OSError):
            kids += [int(x) for x in task.read_text().split()]
    return sorted(set(kids))


def status_kib(pid: int, field: str, proc: Path = Path("/proc")) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (e.g. ``VmRSS``); None if the process is gone."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                return int(parts[0])
            raise ValueError(f"/proc/{pid}/status: unexpected {field} line {line!r}")
    return None


def rss_bytes(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Resident set size (VmRSS) of ``pid`` in bytes; None if the process is gone."""
    kib = status_kib(pid, "VmRSS", proc)
    return kib * 1024 if kib is not None else None

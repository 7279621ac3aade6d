"""``<data-dir>/run.json``: where a running ``cascade run`` serves everything.

``cascade run`` writes it once every process is ready and removes it when it stops; the
second-terminal commands (``cascade send``, ``cascade tail``, ``cascade dlq``) read it to find
the broker ingress, the broker's activity feed and the dead-letter function without flags. A
file left by a run that was killed is recognised by its dead ``pid``.

``<data-dir>/run.lock`` is held (``flock``) for the whole run, so two runs cannot share a data
directory; the kernel releases it when the process dies, however it dies.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson

__all__ = [
    "STATE_FILE",
    "DataDirLocked",
    "RunState",
    "lock_data_dir",
    "read_state",
    "remove_state",
    "write_state",
]

STATE_FILE: Final = "run.json"
LOCK_FILE: Final = "run.lock"


class DataDirLocked(Exception):
    """Another ``cascade run`` uses the data directory."""


@dataclass(frozen=True)
class RunState:
    pid: int
    started_at: str
    data_dir: str
    broker: Mapping[str, Any]  # url, pid, log, ingress {"ns/name": url}
    functions: Mapping[str, Mapping[str, Any]]  # name -> url, pid, log
    traces: Mapping[str, Any] = field(default_factory=dict)  # endpoint (OTLP/HTTP), store
    console: Mapping[str, Any] = field(default_factory=dict)  # url (none with --no-console)

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    @property
    def broker_url(self) -> str:
        return str(self.broker["url"])

    def ingress(self) -> str | None:
        """The ingress URL when there is exactly one Broker."""
        urls = list(dict(self.broker.get("ingress") or {}).values())
        return str(urls[0]) if len(urls) == 1 else None

    def function_url(self, name: str) -> str | None:
        entry = self.functions.get(name)
        return str(entry["url"]) if entry else None

    def traces_endpoint(self) -> str | None:
        """The run's OTLP/HTTP receiver (base URL), where the CLI sends its own spans."""
        endpoint = self.traces.get("endpoint")
        return str(endpoint) if endpoint else None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "pid": self.pid,
                "started_at": self.started_at,
                "data_dir": self.data_dir,
                "broker": self.broker,
                "functions": self.functions,
                "traces": self.traces,
                "console": self.console,
            },
            option=orjson.OPT_INDENT_2,
        )


def write_state(data_dir: Path, state: RunState) -> Path:
    path = data_dir / STATE_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_bytes(state.to_json())
    temporary.replace(path)  # readers never see half a file
    return path


def read_state(data_dir: Path) -> RunState | None:
    """The state of a run using ``data_dir``; None when there is none (or it is unreadable)."""
    try:
        document = orjson.loads((data_dir / STATE_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    try:
        return RunState(
            pid=int(document["pid"]),
            started_at=str(document["started_at"]),
            data_dir=str(document["data_dir"]),
            broker=dict(document["broker"]),
            functions={str(k): dict(v) for k, v in dict(document["functions"]).items()},
            traces=dict(document.get("traces") or {}),
            console=dict(document.get("console") or {}),
        )
    except (KeyError, TypeError, ValueError):
        return None


def remove_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


def lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Hold ``run.lock`` until the returned file is closed (or the process ends)."""
    handle = (data_dir / LOCK_FILE).open("a+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        state = read_state(data_dir)
        holder = f" (pid {state.pid})" if state is not None and state.alive else ""
        raise DataDirLocked(
            f"another cascade run{holder} uses {data_dir}: stop it, or pass another --data-dir"
        ) from None
    return handle

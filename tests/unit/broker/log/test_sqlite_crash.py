"""Every append acknowledged before a kill -9 is still in the sqlite log afterwards."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cascade.broker.event import StoredEvent
from cascade.broker.log.sqlite import SqliteLog

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from cascade.broker.event import StoredEvent
    from cascade.broker.log.sqlite import SqliteLog

    log = SqliteLog(Path(sys.argv[1]), 4)
    i = 0
    while True:
        def ev(n):
            attributes = {"specversion": "1.0", "id": f"e{n}", "source": "/crash", "type": "t"}
            if n % 3:
                attributes["partitionkey"] = f"k{n % 7}"
            return StoredEvent(attributes, n.to_bytes(4, "big") * 50)
        if i % 10 == 9:
            batch = [(ev(i + j), {"traceparent": f"tp{i + j}"}) for j in range(5)]
            positions = log.append_many(batch)
        else:
            positions = [log.append(ev(i), {"traceparent": f"tp{i}"})]
        for n, (partition, offset) in enumerate(positions, start=i):
            print(n, partition, offset, flush=True)
        i += len(positions)
    """
)


def _read_acknowledged(
    proc: subprocess.Popen[str], want: int, deadline: float
) -> tuple[list[str], str]:
    """At least ``want`` complete lines, and the start of the next one."""
    assert proc.stdout is not None
    lines: list[str] = []
    buffer = ""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while len(lines) < want:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"writer acknowledged only {len(lines)} appends in time"
            if not selector.select(timeout=remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536).decode()
            assert chunk, f"writer exited early: {proc.wait(timeout=10)}"
            buffer += chunk
            *complete, buffer = buffer.split("\n")
            lines.extend(complete)
    return lines, buffer


@pytest.mark.slow
def test_acknowledged_appends_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        acknowledged, partial = _read_acknowledged(proc, want=400, deadline=time.monotonic() + 120)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.stdout is not None
        # Lines printed just before the kill are acknowledged too; a line cut short by the
        # kill (no newline yet) is left out.
        *complete, _cut = (partial + proc.stdout.read()).split("\n")
        acknowledged += complete
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    log = SqliteLog(path, 4)
    try:
        stored = {
            (record.partition, record.offset): record
            for partition in range(4)
            for record in log.read(partition, 0, 1_000_000)
        }
        assert len(acknowledged) >= 400
        for line in acknowledged:
            n, partition, offset = (int(part) for part in line.split())
            record = stored.get((partition, offset))
            assert record is not None, f"acknowledged append e{n} at {partition}/{offset} lost"
            assert record.event.attributes["id"] == f"e{n}"
            assert record.event.data == n.to_bytes(4, "big") * 50
            assert record.headers == {"traceparent": f"tp{n}"}
        # Offsets stay gapless and the log goes on after the crash.
        for partition in range(4):
            assert sorted(o for p, o in stored if p == partition) == list(
                range(log.end_offset(partition))
            )
        end = log.end_offset(0)
        after = StoredEvent({"specversion": "1.0", "id": "after", "source": "/", "type": "t"})
        assert log.append(after) == (0, end)  # a new instance's round-robin starts at 0
    finally:
        log.close()

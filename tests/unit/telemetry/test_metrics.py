"""Metrics on an injected registry; multiprocess mode sums every process's files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from cascade.telemetry.metrics import Metrics


def test_metrics_use_the_injected_registry() -> None:
    registry = CollectorRegistry()
    metrics = Metrics("fn", registry)
    metrics.observe("t", "replied", 0.01)
    metrics.observe("t", "replied", 0.02)
    metrics.duplicate()
    metrics.reject(400)
    labels = {"function": "fn", "type": "t", "outcome": "replied"}
    assert registry.get_sample_value("cascade_events_total", labels) == 2
    assert (
        registry.get_sample_value(
            "cascade_event_duration_seconds_count", {"function": "fn", "type": "t"}
        )
        == 2
    )
    assert registry.get_sample_value("cascade_duplicates_total", {"function": "fn"}) == 1
    assert (
        registry.get_sample_value(
            "cascade_requests_rejected_total", {"function": "fn", "status": "400"}
        )
        == 1
    )
    # A second app in the same process gets its own registry: no duplicate-name clash.
    Metrics("fn", CollectorRegistry())


def test_exposition_negotiates_openmetrics() -> None:
    metrics = Metrics("fn", CollectorRegistry())
    metrics.observe("t", "acked", 0.001)
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    body, content_type = metrics.exposition(None)
    assert content_type.startswith("text/plain")
    assert b'cascade_events_total{function="fn",outcome="acked",type="t"} 1.0' in body


_WORKER = """
import sys
from pathlib import Path
from prometheus_client import CollectorRegistry
from cascade.telemetry.metrics import Metrics, enable_multiprocess, mark_process_dead
if sys.argv[1] == "first":
    enable_multiprocess(Path(sys.argv[2]))
metrics = Metrics("fn", CollectorRegistry())
for _ in range(int(sys.argv[3])):
    metrics.observe("t", "replied", 0.01)
metrics.duplicate()
if sys.argv[1] == "read":
    mark_process_dead(12345)  # an unrelated dead pid must not lose anyone's counts
    print(metrics.exposition(None)[0].decode())
"""


def run(role: str, directory: Path, count: int, multiproc: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if multiproc:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, role, str(directory), str(count)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_multiprocess_mode_sums_every_process(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    (directory).mkdir()
    (directory / "counter_999999.db").write_bytes(b"stale")  # left by an earlier run
    run("first", directory, 2, multiproc=False)  # like `cascade serve`'s master + a worker
    assert not (directory / "counter_999999.db").exists()
    run("second", directory, 3, multiproc=True)
    text = run("read", directory, 0, multiproc=True)
    assert 'cascade_events_total{function="fn",outcome="replied",type="t"} 5.0' in text
    assert 'cascade_duplicates_total{function="fn"} 3.0' in text
    assert 'cascade_event_duration_seconds_count{function="fn",type="t"} 5.0' in text

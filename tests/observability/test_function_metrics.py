"""A function's own metrics (fn.metrics): counted when the work commits, gauges read at scrape."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy.orm import Session

from cascade import Function
from cascade.loader import load_module
from cascade.settings import Settings
from cascade.testing import FunctionClient

METERED = Path(__file__).with_name("metered_function.py")


@pytest.fixture(scope="module")
def metered() -> ModuleType:
    return load_module(METERED)


@pytest.fixture
def client(metered: ModuleType, tmp_path: Path) -> Iterator[FunctionClient]:
    with FunctionClient(metered.fn, Settings(data_dir=tmp_path)) as c:
        yield c


def hits(client: FunctionClient, action: str) -> float:
    return client.metric("obs_hits_total", {"function": "metered", "action": action})


def test_a_handler_counts_once_its_transaction_commits(
    client: FunctionClient, metered: ModuleType
) -> None:
    assert client.send(metered.Ping(action="ok"), event_id="a").status == 204
    assert client.send(metered.Ping(action="ok"), event_id="b").status == 204
    assert hits(client, "ok") == 2
    assert client.metric("obs_plain_total", {"function": "metered"}) == 2
    # A redelivery is answered from the dedupe store: the handler does not run, nothing counts.
    assert client.send(metered.Ping(action="ok"), event_id="a").status == 204
    assert hits(client, "ok") == 2


@pytest.mark.parametrize(("action", "status"), [("retry", 503), ("drop", 204), ("boom", 500)])
def test_work_that_does_not_commit_counts_nothing(
    client: FunctionClient, metered: ModuleType, action: str, status: int
) -> None:
    for attempt in range(3):
        assert client.send(metered.Ping(action=action), event_id="same").status == status, attempt
    assert hits(client, action) == 0
    assert client.metric("obs_plain_total", {"function": "metered"}) == 0
    assert client.metric("obs_rows", {"function": "metered", "action": action}) == 0


def test_a_view_counts_after_commit_and_not_when_it_fails(client: FunctionClient) -> None:
    assert client.request("POST", "/hits").status == 201
    assert hits(client, "route") == 2
    assert client.request("POST", "/hits?fail=1").status == 500
    assert hits(client, "route") == 2


def test_gauges_are_read_from_the_store_at_scrape(
    client: FunctionClient, metered: ModuleType
) -> None:
    assert client.metric("obs_rows", {"function": "metered", "action": "ok"}) == 0
    client.send(metered.Ping(action="ok"))
    client.send(metered.Ping(action="ok"))
    client.request("POST", "/hits")
    assert client.metric("obs_rows", {"function": "metered", "action": "ok"}) == 2
    assert client.metric("obs_rows", {"function": "metered", "action": "route"}) == 1
    body = client.get("/metrics").body.decode()
    assert 'obs_rows{action="ok",function="metered"} 2.0' in body
    assert 'obs_hits_total{action="ok",function="metered"} 2.0' in body
    # The broken gauge is left out (and logged); the others are still served.
    assert "obs_broken{" not in body


def test_counting_outside_a_handler_counts_at_once(
    client: FunctionClient, metered: ModuleType
) -> None:
    metered.HITS.labels("thread").inc(3)
    assert hits(client, "thread") == 3


@pytest.mark.parametrize(
    ("name", "labels", "message"),
    [
        ("bad-name", (), "must match"),
        ("x", ("function",), "reserved"),
        ("x", ("a", "a"), "repeated"),
        ("x", ("bad label",), "not a valid label"),
        ("cascade_events", (), "runtime's own"),
    ],
)
def test_bad_declarations_are_refused_with_the_reason(
    name: str, labels: tuple[str, ...], message: str
) -> None:
    fn = Function("declarations")
    with pytest.raises(ValueError, match=message):
        fn.metrics.counter(name, "doc", labels)


def test_a_name_is_declared_once_and_label_values_must_fit() -> None:
    fn = Function("declarations")
    counter = fn.metrics.counter("things", "doc", ["kind"])
    with pytest.raises(ValueError, match="declared twice"):
        fn.metrics.gauge("things", "doc")(lambda session: 0.0)
    with pytest.raises(ValueError, match="give 1 values, got 2"):
        counter.labels("a", "b")
    with pytest.raises(ValueError, match="missing"):
        counter.labels(other="x")
    with pytest.raises(ValueError, match="only go up"):
        counter.labels("a").inc(-1)
    with pytest.raises(RuntimeError, match="before the function's app was created"):
        counter.labels("a").inc()
    assert fn.metrics.declared == ["things_total"]


def test_a_gauge_returning_the_wrong_shape_is_left_out(tmp_path: Path) -> None:
    fn = Function("shapes")

    @fn.metrics.gauge("labelled", "doc", ["kind"])
    def labelled(session: Session) -> float:
        return 1.0  # should be a mapping: the gauge has a label

    @fn.metrics.gauge("plain", "doc")
    def plain(session: Session) -> float:
        return 4.0

    with FunctionClient(fn, Settings(data_dir=tmp_path)) as client:
        body = client.get("/metrics").body.decode()
    assert 'plain{function="shapes"} 4.0' in body
    assert "labelled{" not in body


_WORKER = """
import os
import sys
from pathlib import Path
from cascade.loader import load_module
from cascade.settings import Settings
from cascade.telemetry.metrics import enable_multiprocess
from cascade.testing import FunctionClient

if sys.argv[1] == "first":
    enable_multiprocess(Path(sys.argv[2]))  # like cascade serve's master, before the workers
module = load_module(Path(sys.argv[3]))
with FunctionClient(module.fn, Settings(data_dir=Path(sys.argv[4]))) as client:
    for number in range(int(sys.argv[5])):
        assert client.send(module.Ping(action="ok")).status == 204
    print(client.get("/metrics").body.decode())
"""


def test_counters_sum_across_processes_in_multiprocess_mode(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prom"
    data = tmp_path / "data"
    data.mkdir()
    outputs = []
    for role, count in (("first", 2), ("second", 3)):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        if role == "second":
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # a worker forked later
        result = subprocess.run(
            [sys.executable, "-c", _WORKER, role, str(metrics_dir), str(METERED), str(data)]
            + [str(count)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    # The second process reads both processes' counter files (2 + 3), and the gauge reads
    # the store both wrote to.
    assert 'obs_hits_total{action="ok",function="metered"} 2.0' in outputs[0]
    assert 'obs_hits_total{action="ok",function="metered"} 5.0' in outputs[1]
    assert 'obs_rows{action="ok",function="metered"} 5.0' in outputs[1]

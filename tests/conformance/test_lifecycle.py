"""Start-up, initial offsets (§6.2), admin endpoints, metrics, and draining on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conformance.harness import (
    CASCADE,
    WAIT,
    Answer,
    BrokerProcess,
    Subscriber,
    broker_manifest,
    ce_headers,
    metric_value,
    request,
    trigger_manifest,
    wait_for_event,
    write_manifests,
)


def test_a_manifest_error_exits_2_with_a_message(tmp_path: Path) -> None:
    bad = trigger_manifest("bad", "http://127.0.0.1:1/x", filter_attributes={"Not_Valid": "x"})
    manifests = write_manifests(tmp_path / "bad.yaml", [broker_manifest(), bad])
    result = subprocess.run(
        [CASCADE, "broker", "-f", str(manifests), "--port", "0", "--log", "memory"],
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "bad.yaml" in stderr
    assert "Not_Valid" in stderr
    assert "Traceback" not in stderr


def test_start_prints_notices_urls_and_the_trigger_table(
    tmp_path: Path, subscriber: Subscriber
) -> None:
    mt_broker = broker_manifest("legacy")
    mt_broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] = (
        "MTChannelBasedBroker"
    )
    manifests = write_manifests(
        tmp_path / "m.yaml",
        [
            broker_manifest(),
            mt_broker,
            trigger_manifest(
                "orders", subscriber.url("/o"), filters=[{"prefix": {"type": "order."}}]
            ),
        ],
    )
    broker = BrokerProcess(manifests, tmp_path).start()
    try:
        output = broker.output()
    finally:
        assert broker.stop() == 0
    assert f"http://127.0.0.1:{broker.port}/conformance/default" in output
    assert f"http://127.0.0.1:{broker.port}/conformance/legacy" in output
    assert "MTChannelBasedBroker" in output  # the notice: emulated as Kafka anyway
    assert "conformance/orders" in output
    assert subscriber.url("/o") in output


def test_a_new_trigger_starts_at_the_end_of_the_log(tmp_path: Path, subscriber: Subscriber) -> None:
    first = write_manifests(
        tmp_path / "first.yaml",
        [broker_manifest(), trigger_manifest("early", subscriber.url("/early"))],
    )
    broker = BrokerProcess(first, tmp_path, log="sqlite").start()
    broker.publish("before")
    wait_for_event(subscriber, "/early", "before")
    broker.wait_idle()
    assert broker.stop() == 0

    second = write_manifests(
        tmp_path / "second.yaml",
        [
            broker_manifest(),
            trigger_manifest("early", subscriber.url("/early")),
            trigger_manifest("late", subscriber.url("/late")),
        ],
    )
    broker = BrokerProcess(second, tmp_path, log="sqlite", port=broker.port).start()
    try:
        broker.publish("after")
        wait_for_event(subscriber, "/late", "after")
        wait_for_event(subscriber, "/early", "after")
        broker.wait_idle()
    finally:
        assert broker.stop() == 0
    assert [r.ce["id"] for r in subscriber.received("/late")] == ["after"]
    # "early" committed "before" in its first life: not delivered again.
    assert [r.ce["id"] for r in subscriber.received("/early")] == ["before", "after"]


def test_triggers_endpoint_and_metrics(tmp_path: Path, subscriber: Subscriber) -> None:
    subscriber.program("/m-fail", then=Answer(500))
    manifests = write_manifests(
        tmp_path / "m.yaml",
        [
            broker_manifest(),
            trigger_manifest(
                "metered",
                subscriber.url("/m-ok"),
                filters=[{"exact": {"type": "ok"}}],
                ordered=True,
                delivery={"retry": 1, "backoffDelay": "PT0.01S"},
            ),
            trigger_manifest(
                "failing",
                subscriber.url("/m-fail"),
                filters=[{"exact": {"type": "fail"}}],
                delivery={"retry": 2, "backoffDelay": "PT0.01S", "backoffPolicy": "linear"},
            ),
        ],
    )
    broker = BrokerProcess(manifests, tmp_path, args=["--partitions", "3"]).start()
    try:
        broker.publish("m-1", "ok")
        broker.publish("m-2", "ok")
        broker.publish("m-3", "fail")
        broker.wait_idle()
        triggers = {t["name"]: t for t in broker.triggers()}
        metrics = broker.metrics()
    finally:
        broker.stop()
    metered = triggers["metered"]
    assert metered["ordered"] is True
    assert metered["subscriber"] == subscriber.url("/m-ok")
    assert metered["filter"] == {"filters": [{"exact": {"type": "ok"}}]}
    assert metered["delivery"]["retry"] == 1
    assert [p["partition"] for p in metered["partitions"]] == [0, 1, 2]
    assert sum(p["end_offset"] for p in metered["partitions"]) == 3
    assert sum(p["committed"] for p in metered["partitions"]) == 3
    assert all(p["lag"] == 0 for p in metered["partitions"])

    def value(name: str, **labels: str) -> float:
        return metric_value(metrics, name, **labels)

    assert (
        value("cascade_broker_events_accepted_total", namespace="conformance", broker="default")
        == 3
    )
    assert value("cascade_broker_deliveries_total", trigger="metered", outcome="delivered") == 2
    assert value("cascade_broker_deliveries_total", trigger="failing", outcome="retried") == 2
    assert value("cascade_broker_deliveries_total", trigger="failing", outcome="dropped") == 1
    assert value("cascade_broker_dispatch_latency_seconds_count", trigger="failing") == 3
    assert "cascade_broker_lag_events" in metrics
    assert value("cascade_broker_lag_events", trigger="metered") == 0


def test_sigterm_refuses_new_events_finishes_in_flight_and_exits_0(
    tmp_path: Path, subscriber: Subscriber
) -> None:
    subscriber.program("/slow", then=Answer(200, delay=1.5))
    manifests = write_manifests(
        tmp_path / "m.yaml", [broker_manifest(), trigger_manifest("slow", subscriber.url("/slow"))]
    )
    broker = BrokerProcess(manifests, tmp_path, log="sqlite", args=["--drain-seconds", "20"])
    broker.start()
    broker.publish("in-flight")
    wait_for_event(subscriber, "/slow", "in-flight")
    assert broker.process is not None
    broker.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    health = request(broker.port, "GET", "/-/health")
    assert health.status == 503
    assert broker.send(ce_headers("too-late")).status == 503
    assert broker.process.wait(WAIT) == 0

    # The in-flight delivery finished and was committed: a restart does not deliver it again.
    again = BrokerProcess(manifests, tmp_path, log="sqlite", port=broker.port).start()
    try:
        again.wait_idle()
        time.sleep(0.3)
    finally:
        assert again.stop() == 0
    assert [r.ce["id"] for r in subscriber.received("/slow")] == ["in-flight"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_abandoned_deliveries_are_redelivered_after_restart(
    tmp_path: Path, subscriber: Subscriber, signum: int
) -> None:
    path = f"/stuck-{signum}"
    subscriber.program(path, Answer(200, delay=30), then=Answer(200))
    manifests = write_manifests(
        tmp_path / "m.yaml", [broker_manifest(), trigger_manifest("stuck", subscriber.url(path))]
    )
    broker = BrokerProcess(manifests, tmp_path, log="sqlite", args=["--drain-seconds", "0.3"])
    broker.start()
    broker.publish("stuck-1")
    wait_for_event(subscriber, path, "stuck-1")
    assert broker.process is not None
    broker.process.send_signal(signum)
    assert broker.process.wait(WAIT) == 0

    again = BrokerProcess(manifests, tmp_path, log="sqlite", port=broker.port).start()
    try:
        subscriber.wait_for(path, 2)
        again.wait_idle()
    finally:
        assert again.stop() == 0
    assert [r.ce["id"] for r in subscriber.received(path)] == ["stuck-1", "stuck-1"]


def test_a_taken_port_exits_1_with_a_message(tmp_path: Path) -> None:
    manifests = write_manifests(tmp_path / "m.yaml", [broker_manifest()])
    first = BrokerProcess(manifests, tmp_path).start()
    try:
        result = subprocess.run(
            [CASCADE, "broker", "-f", str(manifests), "--port", str(first.port), "--log", "memory"],
            capture_output=True,
            timeout=WAIT,
            check=False,
        )
    finally:
        assert first.stop() == 0
    assert result.returncode == 1
    assert "cannot start the broker" in result.stderr.decode()

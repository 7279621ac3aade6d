"""Crash safety of `cascade broker` on sqlite: kill -9 while delivering, then restart.

Every event answered 202 must reach every matching Trigger at least once, and an ordered
Trigger must see each partition key's events first delivered in publish order.
"""

from __future__ import annotations

import signal
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.harness import (
    WAIT,
    Answer,
    BrokerProcess,
    Subscriber,
    broker_manifest,
    ce_headers,
    request,
    trigger_manifest,
    write_manifests,
)

pytestmark = pytest.mark.slow

KEYS = ["k0", "k1", "k2", "k3", "k4"]


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    sub = Subscriber()
    sub.program("/ordered", then=Answer(200, delay=0.01))
    sub.program("/unordered", then=Answer(200, delay=0.03))
    yield sub
    sub.close()


def manifests(tmp_path: Path, subscriber: Subscriber) -> Path:
    return write_manifests(
        tmp_path / "manifests.yaml",
        [
            broker_manifest(delivery={"retry": 3, "backoffDelay": "PT0.01S"}),
            trigger_manifest(
                "ordered",
                subscriber.url("/ordered"),
                filters=[{"exact": {"type": "keyed"}}],
                ordered=True,
            ),
            trigger_manifest("unordered", subscriber.url("/unordered")),
        ],
    )


def event_key(n: int) -> str | None:
    return KEYS[n % len(KEYS)] if n % 3 else None


def publish(broker: BrokerProcess, n: int) -> bool:
    """True when the broker answered 202 (the event is stored); False on 503/no answer."""
    key = event_key(n)
    extra = {"partitionkey": key} if key else {}
    headers = ce_headers(f"ev-{n:04d}", "keyed" if key else "loose", **extra)
    try:
        reply = request(broker.port, "POST", "/conformance/default", headers, b"{}", timeout=5)
    except OSError:
        return False
    return reply.status == 202


def first_deliveries(subscriber: Subscriber, path: str) -> list[str]:
    seen: dict[str, None] = {}
    for received in subscriber.received(path):
        seen.setdefault(received.ce["id"], None)
    return list(seen)


def check_everything_arrived(subscriber: Subscriber, accepted: set[int]) -> None:
    ids = {f"ev-{n:04d}" for n in accepted}
    keyed = {f"ev-{n:04d}" for n in accepted if event_key(n)}
    unordered = first_deliveries(subscriber, "/unordered")
    ordered = first_deliveries(subscriber, "/ordered")
    assert ids <= set(unordered), sorted(ids - set(unordered))[:10]
    assert keyed <= set(ordered), sorted(keyed - set(ordered))[:10]
    # Per key, the first delivery of each event follows the publish order.
    per_key: dict[str, list[int]] = defaultdict(list)
    for event_id in ordered:
        n = int(event_id[3:])
        per_key[str(event_key(n))].append(n)
    for key, numbers in per_key.items():
        assert numbers == sorted(numbers), key


def test_kill_9_while_delivering_loses_nothing(tmp_path: Path, subscriber: Subscriber) -> None:
    files = manifests(tmp_path, subscriber)
    broker = BrokerProcess(files, tmp_path, log="sqlite", args=["--partitions", "4"]).start()
    accepted: set[int] = set()
    stop_publishing = threading.Event()

    def publisher() -> None:
        n = 0
        while not stop_publishing.is_set() and n < 400:
            if publish(broker, n):
                accepted.add(n)
            n += 1

    thread = threading.Thread(target=publisher)
    try:
        thread.start()
        subscriber.wait_for("/ordered", 30)
        subscriber.wait_for("/unordered", 30)
        broker.kill()  # kill -9 in the middle of publishing and delivering
    finally:
        stop_publishing.set()
        thread.join(WAIT)
    assert len(accepted) >= 30

    again = BrokerProcess(
        files, tmp_path, log="sqlite", args=["--partitions", "4"], port=broker.port
    )
    again.start()
    try:
        for n in range(1000, 1050):
            assert publish(again, n)
            accepted.add(n)
        again.wait_idle(timeout=120)
    finally:
        assert again.stop() == 0
    check_everything_arrived(subscriber, accepted)
    # The crash is visible: some events were delivered twice (at-least-once, not exactly-once).
    assert len(subscriber.received("/unordered")) >= len(accepted)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_exits_0_and_loses_nothing(
    tmp_path: Path, subscriber: Subscriber, signum: int
) -> None:
    files = manifests(tmp_path, subscriber)
    args = ["--partitions", "4", "--drain-seconds", "0.5"]
    broker = BrokerProcess(files, tmp_path, log="sqlite", args=args).start()
    accepted = {n for n in range(120) if publish(broker, n)}
    assert len(accepted) == 120
    subscriber.wait_for("/unordered", 10)
    assert broker.process is not None
    broker.process.send_signal(signum)
    assert broker.process.wait(WAIT) == 0

    again = BrokerProcess(files, tmp_path, log="sqlite", args=args, port=broker.port).start()
    try:
        again.wait_idle(timeout=120)
    finally:
        assert again.stop() == 0
    check_everything_arrived(subscriber, accepted)

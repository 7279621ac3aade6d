"""Retention of the sqlite log (`--retention-bytes`): the log is cut back to its limit, but a
record a Trigger has not finished (still retrying, or on its way to the dead-letter sink)
stays until that Trigger has committed past it, and then it is delivered, not lost."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.conformance.conftest import StartBroker
from tests.conformance.harness import (
    WAIT,
    Answer,
    Subscriber,
    broker_manifest,
    trigger_manifest,
)

EVENTS = 400
BODY = "x" * 1000
LIMIT = 32 * 1024


def stored(log_file: Path) -> tuple[int, int]:
    """(records, bytes) in the broker's sqlite log, read beside the running broker."""
    with sqlite3.connect(f"file:{log_file}?mode=ro", uri=True) as conn:
        count, size = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(attributes) + length(data)"
            " + COALESCE(length(headers), 0)), 0) FROM records"
        ).fetchone()
    return int(count), int(size)


def wait(condition: str, probe: object, timeout: float = 3 * WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {condition}")


def test_retention_waits_for_the_slowest_trigger_then_cuts_to_the_limit(
    start_broker: StartBroker, subscriber: Subscriber
) -> None:
    subscriber.program("/retention-stuck", then=Answer(503))
    retry_forever = {"retry": 100000, "backoffPolicy": "linear", "backoffDelay": "PT0.05S"}
    broker = start_broker(
        [
            broker_manifest(),
            trigger_manifest("fast", subscriber.url("/retention-fast")),
            trigger_manifest(
                "stuck", subscriber.url("/retention-stuck"), delivery=retry_forever, ordered=True
            ),
        ],
        log="sqlite",
        args=[
            "--partitions",
            "1",
            "--retention-bytes",
            str(LIMIT),
            "--retention-interval",
            "0.1",
        ],  # fmt: skip
    )
    log_file = broker.data_dir / "conformance.default.log.sqlite3"
    ids = [f"ret-{n}" for n in range(EVENTS)]
    for event_id in ids:
        broker.publish(event_id, body=BODY)
    subscriber.wait_for("/retention-fast", EVENTS)
    # Passes run and hold back: every record is past the limit, none finished by "stuck".
    wait("a retention pass that holds records back", lambda: "has not finished" in broker.output())
    records, size = stored(log_file)
    assert records == EVENTS
    assert size > 10 * LIMIT

    subscriber.program("/retention-stuck", then=Answer(200))
    wait(
        "stuck to receive every event",
        lambda: {r.ce["id"] for r in subscriber.received("/retention-stuck")} >= set(ids),
    )
    wait("the log to be cut back to its limit", lambda: stored(log_file)[1] <= LIMIT)
    assert "retention: dropped" in broker.output()
    assert broker.stop() == 0

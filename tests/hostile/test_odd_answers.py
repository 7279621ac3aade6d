"""Issue 10, rows 2 and 3: subscribers that answer with endless chunks, bodies past any limit,
non-UTF-8 ``Kne-*`` headers, resets mid-body, garbage or a reply nested 300 deep.

Each event must end in the dead-letter sink with a reason (nothing dropped), and the broker's
peak memory (VmHWM of the real ``cascade broker`` process) must stay bounded while it reads
those answers: the answer limit is ``--max-event-bytes``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.harness import (
    BrokerProcess,
    Received,
    Subscriber,
    broker_manifest,
    trigger_manifest,
    wait_for_event,
    write_manifests,
)
from tests.hostile.odd_subscriber import BEHAVIOURS, OddSubscriber
from tests.hostile.process_memory import peak_rss_bytes

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
# The broker's own footprint moves by a few MiB with allocator noise; reading one answer of at
# most --max-event-bytes (1 MiB) per behaviour stays far below this.
GROWTH_LIMIT = 48 * MIB


@pytest.fixture(scope="module")
def odd() -> Iterator[OddSubscriber]:
    with OddSubscriber() as subscriber:
        yield subscriber


@pytest.fixture(scope="module")
def sink() -> Iterator[Subscriber]:
    recorder = Subscriber()
    yield recorder
    recorder.close()


@pytest.fixture(scope="module")
def broker(
    odd: OddSubscriber, sink: Subscriber, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    workdir = tmp_path_factory.mktemp("odd")
    triggers = [
        trigger_manifest(
            path.strip("/"),
            odd.url(path),
            filter_attributes={"type": f"odd{path.replace('/', '.')}"},
            delivery={
                "retry": 0,
                "timeout": "PT20S",
                "deadLetterSink": {"uri": sink.url("/dls")},
            },
        )
        for path in BEHAVIOURS
    ]
    manifests = write_manifests(workdir / "manifests.yaml", [broker_manifest(), *triggers])
    process = BrokerProcess(manifests, workdir).start()
    yield process
    process.stop()


BIG_ANSWERS = ("/endless-chunk", "/many-chunks", "/huge-length", "/until-close")
ODD_ANSWERS = ("/non-utf8-kne", "/deep-reply", "/reset-mid-body", "/garbage")


def publish_and_wait(
    broker: BrokerProcess, sink: Subscriber, paths: tuple[str, ...]
) -> dict[str, Received]:
    for path in paths:
        broker.publish(f"odd-{path.strip('/')}", f"odd{path.replace('/', '.')}")
    arrived = {
        path: wait_for_event(sink, "/dls", f"odd-{path.strip('/')}", timeout=60) for path in paths
    }
    for path, dead in arrived.items():
        assert dead.ce["knativeerrordest"].endswith(path), (path, dead.ce)
    return arrived


def test_answers_past_any_limit_keep_the_broker_bounded(
    broker: BrokerProcess, sink: Subscriber
) -> None:
    """Row 2: endless chunks, a 10 GB Content-Length, a body until close."""
    assert broker.process is not None
    before = peak_rss_bytes(broker.process.pid)
    publish_and_wait(broker, sink, BIG_ANSWERS)
    grown = peak_rss_bytes(broker.process.pid) - before
    assert grown < GROWTH_LIMIT, f"the broker's peak RSS grew by {grown / MIB:.0f} MiB"


def test_odd_answers_end_in_the_sink_with_a_reason(broker: BrokerProcess, sink: Subscriber) -> None:
    """Row 3: nothing the subscriber answers makes the broker drop the event."""
    arrived = publish_and_wait(broker, sink, ODD_ANSWERS)
    # a failed answer's non-UTF-8 Kne-Reason is kept, readable, instead of losing the event
    reason = arrived["/non-utf8-kne"].ce["reason"]
    assert reason.startswith("caf\\xe9 \\xff\\xfe\\x1b[2J broken"), reason
    assert base64.b64decode(arrived["/non-utf8-kne"].ce["knativeerrordata"]) == b"refused"
    # a reply the broker cannot take dead-letters the event it answers, saying why
    assert "subscriber answered" in arrived["/deep-reply"].ce["reason"]


def test_the_broker_still_delivers_after_the_odd_answers(
    broker: BrokerProcess, sink: Subscriber, tmp_path: Path
) -> None:
    broker.publish("odd-after", "odd.garbage")
    wait_for_event(sink, "/dls", "odd-after")
    assert broker.process is not None
    assert broker.process.poll() is None

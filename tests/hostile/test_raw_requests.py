"""Issue 10, item 10: hypothesis-built raw HTTP requests against a function (``cascade serve``
of the greeter) and the broker ingress, as real processes.

Each request must get a documented status (never a 5xx but the broker's 503 for an event over
its size), the servers stay up with bounded memory, and every event the broker accepted (202)
is delivered: nothing accepted is lost.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.conformance.harness import (
    BrokerProcess,
    Subscriber,
    broker_manifest,
    trigger_manifest,
    write_manifests,
)
from tests.hostile.process_memory import peak_rss_bytes
from tests.hostile.raw_http import events, raw_requests, send_raw
from tests.integration.server import Server, serve

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
GREETER = Path(__file__).resolve().parents[2] / "examples" / "greeter"
# A function answers client input with 200/204 (handled) or a 4xx naming the client's fault
# (docs/runtime.md: 400, 404, 405, 413, 415, 422, ...; gunicorn's own 4xx for broken HTTP such
# as 417 for an unknown Expect); no 5xx but gunicorn's 501 for a transfer coding it does not
# implement, as RFC 9112 §6.1 asks.
FUNCTION_SUCCESS = {200, 204}
# The broker ingress (docs/broker.md §1): 202 stored, 4xx for the client's fault, and 503 only
# for an event over --max-event-bytes (§1.5); never a 500.
BROKER_SUCCESS = {202}


def documented(status: int | None, success: set[int], *, allowed_5xx: int) -> bool:
    """No answer (the server closed a request it could not parse), a success, a 4xx, or the
    one documented 5xx."""
    return status is None or status in success or 400 <= status < 500 or status == allowed_5xx


SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def function(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("raw-function")
    with serve(workdir, "--workers", "1", target=GREETER) as server:
        yield server


@pytest.fixture(scope="module")
def subscriber() -> Iterator[Subscriber]:
    recorder = Subscriber()
    yield recorder
    recorder.close()


@pytest.fixture(scope="module")
def broker(
    subscriber: Subscriber, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    workdir = tmp_path_factory.mktemp("raw-broker")
    manifests = write_manifests(
        workdir / "manifests.yaml",
        [broker_manifest(), trigger_manifest("all", subscriber.url("/all"))],
    )
    process = BrokerProcess(manifests, workdir, args=["--read-timeout", "3"]).start()
    yield process
    process.stop()


@SETTINGS
@given(request=raw_requests((b"/",)))
def test_a_function_answers_raw_requests_with_documented_statuses(
    function: Server, request: bytes
) -> None:
    # gunicorn has no body deadline: a half-close ends a body shorter than announced.
    answer = send_raw(function.port, request, half_close=True)
    # No status at all is allowed only for a request gunicorn's parser cannot read to its end
    # (it closes the connection); never a 5xx from client input.
    assert documented(answer.status, FUNCTION_SUCCESS, allowed_5xx=501), answer.head
    assert function.process.poll() is None


_ids = itertools.count()


@settings(SETTINGS, max_examples=80)  # a lying Content-Length costs --read-timeout (3 s)
@given(request=raw_requests((b"/conformance/default",)))
def test_the_broker_answers_raw_requests_with_documented_statuses(
    broker: BrokerProcess, subscriber: Subscriber, request: bytes
) -> None:
    # No half-close: aiohttp closes a half-closed connection, so --read-timeout ends short bodies.
    answer = send_raw(broker.port, request, half_close=False)
    assert documented(answer.status, BROKER_SUCCESS, allowed_5xx=503), answer.head
    # Interleaved with the hostile ones, a well-formed event must still be accepted.
    event_id = f"canary-{next(_ids)}"
    canary = send_raw(
        broker.port,
        events(event_id, "com.example.canary", b"/conformance/default"),
        half_close=False,
    )
    assert canary.status == 202, canary.head


def test_every_accepted_canary_was_delivered_and_memory_stayed_bounded(
    broker: BrokerProcess, subscriber: Subscriber, function: Server
) -> None:
    """Runs after the two hypothesis tests (same module fixtures): what they sent as canaries
    all reached the subscriber, and neither server grew past a bounded footprint."""
    sent = next(_ids)
    if sent == 0:
        pytest.skip("run with the hypothesis tests above (they send the canaries)")
    broker.wait_idle(timeout=60)
    delivered = {r.ce.get("id") for r in subscriber.received("/all")}
    missing = [f"canary-{n}" for n in range(sent) if f"canary-{n}" not in delivered]
    assert not missing, f"accepted but never delivered: {missing[:10]}"
    assert broker.process is not None
    for pid in (broker.process.pid, function.process.pid):
        assert peak_rss_bytes(pid) < 400 * MIB, f"process {pid} peaked past 400 MiB"

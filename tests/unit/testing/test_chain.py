"""cascade.testing.Chain on a tiny app (tests/unit/testing/relay): the broker's filters, replies,
retries without sleeping, the dead-letter sink with its reason, drops, ordering and loops."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cascade.testing import Chain, ChainError
from tests.unit.testing.relay.contracts import Loop, Ping, Pong

RELAY = Path(__file__).parent / "relay"
MANIFESTS = RELAY / "manifests.yaml"


def open_chain(**options: object) -> Chain:
    return Chain.from_manifests(MANIFESTS, functions_dir=RELAY / "functions", **options)  # type: ignore[arg-type]


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> Iterator[Chain]:
    """A chain in which any real sleep fails the test: backoff is recorded, never waited."""

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds}s")

    async def no_async_sleep(seconds: float, result: object = None) -> None:
        raise AssertionError(f"slept {seconds}s")

    monkeypatch.setattr(time, "sleep", no_sleep)
    monkeypatch.setattr(asyncio, "sleep", no_async_sleep)
    with open_chain() as c:
        yield c


def test_a_reply_re_enters_the_broker_and_reaches_every_matching_trigger(chain: Chain) -> None:
    sent = chain.send(Ping(key="k1", n=1), partitionkey="k1")
    assert chain.deliveries() == []  # nothing moves before run_until_idle
    chain.run_until_idle()
    assert [(d.trigger, d.status) for d in chain.deliveries()] == [
        ("ponger-ping", 200),
        ("recorder-pong-ordered", 204),  # CESQL: type and EXISTS partitionkey
        ("recorder-pong-unordered", 204),  # attributes filter
    ]
    [ping, pong] = chain.events()
    assert ping.id == sent.id
    assert pong.event(Pong) == Pong(key="k1", n=1)
    first = chain.deliveries()[0]
    assert first.reply is not None
    assert first.reply.id == pong.id
    # What the subscriber got: the broker's Kafka extensions on the stored event.
    assert first.message.attributes["knativekafkapartition"] == str(ping.partition)
    assert first.message.attributes["knativekafkaoffset"] == str(ping.offset)
    assert [o.outcome for o in chain.outcomes()] == ["delivered"] * 3


def test_filters_decide_who_gets_what(chain: Chain) -> None:
    chain.max_records = 300
    chain.send(Pong(key="k", n=0))  # no partitionkey: the CESQL Trigger does not match
    chain.send(Loop(n=0), subject="x", extensions={"stop": "yes"})
    chain.send(Pong(key="k", n=1), partitionkey="k")
    with pytest.raises(ChainError, match="reply loop"):
        chain.run_until_idle()  # the looper never stops (Kafka has no loop guard)
    pongs = [(d.trigger, d.message.partitionkey) for d in chain.deliveries(type=Pong)]
    assert pongs == [
        ("recorder-pong-unordered", None),
        ("recorder-pong-ordered", "k"),
        ("recorder-pong-unordered", "k"),
    ]


def test_the_opt_in_hop_limit_ends_a_reply_loop() -> None:
    with open_chain(max_hops=3) as chain:
        chain.send(Loop(n=0))
        chain.run_until_idle()
        answered = [d.message.event(Loop).n for d in chain.deliveries("looper-loop")]
        assert answered == [0, 1, 2, 3]  # the reply to n=3 is a 4th hop: dropped
        assert [m.attributes.get("cascadehops") for m in chain.events(Loop)] == [
            None,
            "1",
            "2",
            "3",
        ]


def test_retries_follow_the_trigger_delivery_spec_without_sleeping(chain: Chain) -> None:
    chain.send(Ping(key="k", n=7, mode="retry"))
    chain.run_until_idle()
    attempts = chain.deliveries("ponger-ping", target="subscriber")
    assert [(d.attempt, d.status) for d in attempts] == [(1, 503), (2, 503), (3, 503), (4, 503)]
    assert [d.backoff for d in attempts] == [0.0, 1.0, 2.0, 3.0]  # linear, PT1S, retry 3
    [parked] = chain.dead_letters("ponger-ping")
    assert parked.url == "http://sink.relay.svc.cluster.local"
    attributes = parked.message.attributes
    assert attributes["knativeerrorcode"] == "503"
    assert attributes["knativeerrordest"] == "http://ponger.relay.svc.cluster.local"
    assert parked.message.event(Ping).n == 7  # the original data, untouched
    assert [o.outcome for o in chain.outcomes("ponger-ping")] == ["retried"] * 3 + ["dead-lettered"]


def test_a_dead_letter_keeps_the_handler_reason_and_is_not_retried(chain: Chain) -> None:
    chain.send(Ping(key="k", n=3, mode="reject"))
    chain.run_until_idle()
    assert [d.status for d in chain.deliveries("ponger-ping", target="subscriber")] == [422]
    [parked] = chain.dead_letters()
    assert parked.message.attributes["reason"] == "ping 3 was rejected"  # from Kne-Reason
    [outcome] = chain.outcomes("ponger-ping")
    assert (outcome.outcome, outcome.reason) == ("dead-lettered", "ping 3 was rejected")


def test_a_malformed_reply_goes_to_the_dead_letter_sink_without_retry(chain: Chain) -> None:
    chain.send(Ping(key="k", n=1), subject="garbage")
    chain.run_until_idle()
    [attempt] = chain.deliveries("ponger-garbage", target="subscriber")
    assert (attempt.status, attempt.url) == (200, "http://ponger.relay.svc.cluster.local/garbage")
    [parked] = chain.dead_letters("ponger-garbage")
    # §4.2: no HTTP failure, so only the destination is added.
    assert "knativeerrorcode" not in parked.message.attributes
    assert parked.message.attributes["knativeerrordest"].endswith("/garbage")


def test_an_unreachable_subscriber_without_sink_is_retried_then_dropped(chain: Chain) -> None:
    chain.send(Ping(key="k", n=1), subject="lost")
    chain.run_until_idle()
    attempts = chain.deliveries("nowhere-lost")
    assert [(d.status, d.backoff) for d in attempts] == [(None, 0.0), (None, 1.0)]
    assert attempts[0].error is not None
    assert "nowhere.relay.example" in attempts[0].error
    assert [o.outcome for o in chain.outcomes("nowhere-lost")] == ["retried", "dropped"]


def test_what_a_route_publishes_enters_the_broker(chain: Chain) -> None:
    result = chain["ponger"].request("POST", "/pings", json={"key": "p", "count": 3})
    assert result.status == 200, result.body
    published = chain.events(Ping)
    assert [m.event(Ping).n for m in published] == [0, 1, 2]
    assert {m.source for m in published} == {"/ponger"}
    assert {m.partition for m in published} == {published[0].partition}  # one key, one partition
    chain.run_until_idle()
    assert len(chain.deliveries("recorder-pong-ordered")) == 3


def test_the_ingress_refuses_what_the_broker_would(chain: Chain) -> None:
    url = chain.ingress_url()
    assert url == "http://kafka-broker-ingress.knative-eventing.svc.cluster.local/relay/main"
    assert chain.post(url, {"Content-Type": "application/json"}, b"{}").status == 400
    assert chain.post(url.replace("/main", "/other"), {}, b"").status == 404
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/t", "ce-type": "t.big"}
    with open_chain(max_event_bytes=100) as small:
        assert small.post(small.ingress_url(), headers, b"x" * 200).status == 503
        assert small.events() == []
    assert chain.events() == []


def offsets(chain: Chain, trigger: str, key: str) -> list[int]:
    """The log offsets of the events ``trigger`` got for ``key``, in delivery order."""
    return [
        int(d.message.attributes["knativekafkaoffset"])
        for d in chain.deliveries(trigger)
        if d.message.partitionkey == key
    ]


@pytest.mark.parametrize("seed", range(8))
def test_an_ordered_trigger_keeps_the_order_of_a_partition_key(seed: int) -> None:
    with open_chain(seed=seed) as chain:
        for n in range(6):
            chain.send(Ping(key="a", n=n), partitionkey="a")
            chain.send(Ping(key="b", n=n), partitionkey="b")
        chain.run_until_idle()
        for key in ("a", "b"):
            stored = [m.offset for m in chain.events(Pong) if m.partitionkey == key]
            assert offsets(chain, "recorder-pong-ordered", key) == stored  # the log's order
            assert len(stored) == 6


def test_an_unordered_trigger_may_reorder_under_a_seed() -> None:
    in_order = []
    for seed in range(8):
        with open_chain(seed=seed) as chain:
            for n in range(6):
                chain.send(Ping(key="a", n=n), partitionkey="a")
            chain.run_until_idle()
            got = offsets(chain, "recorder-pong-unordered", "a")
            assert sorted(got) == [m.offset for m in chain.events(Pong)]
            in_order.append(got == sorted(got))
    assert not all(in_order)  # some seed delivers out of order: Knative does not promise it
    with open_chain() as chain:  # without a seed: the order of the log
        for n in range(6):
            chain.send(Ping(key="a", n=n), partitionkey="a")
        chain.run_until_idle()
        got = offsets(chain, "recorder-pong-unordered", "a")
        assert got == sorted(got)


async def run_inside_a_running_loop(chain: Chain) -> int:
    chain.send(Ping(key="k", n=1), partitionkey="k")
    return chain.run_until_idle()


def test_the_chain_also_runs_where_an_event_loop_is_running(chain: Chain) -> None:
    """From an ``async def`` test (or beside a Playwright session) the thread's loop is busy."""
    with ThreadPoolExecutor(1) as thread:  # a thread of its own: this one may run a loop already
        processed = thread.submit(asyncio.run, run_inside_a_running_loop(chain)).result()
    assert processed == 2 * len(chain.topology.triggers)  # ping, pong: every Trigger sees both
    assert [d.status for d in chain.deliveries()] == [200, 204, 204]


def test_several_brokers_need_a_choice_and_bad_folders_fail_clearly(tmp_path: Path) -> None:
    doubled = tmp_path / "two.yaml"
    text = MANIFESTS.read_text(encoding="utf-8")
    doubled.write_text(text + "---\n" + text.split("---\n")[4].replace("name: main", "name: b2"))
    with pytest.raises(ChainError, match="several Brokers"):
        Chain.from_manifests(doubled, functions_dir=RELAY / "functions")
    with Chain.from_manifests(
        doubled, functions_dir=RELAY / "functions", broker="relay/b2"
    ) as chain:
        assert chain.ingress_url().endswith("/relay/b2")
    with pytest.raises(ValueError, match="no such folder"):
        Chain.from_manifests(MANIFESTS, functions_dir=tmp_path / "missing")


def test_unknown_function_names_are_a_clear_error(chain: Chain) -> None:
    with pytest.raises(ChainError, match="no function 'nope'.*looper, ponger, recorder, sink"):
        chain["nope"]
    with pytest.raises(ChainError, match="nothing answers"):
        chain.function_at("http://elsewhere.example/")


def test_the_error_data_of_a_dead_letter_is_the_last_answer(chain: Chain) -> None:
    chain.send(Ping(key="k", n=1, mode="retry"))
    chain.run_until_idle()
    [parked] = chain.dead_letters()
    last = chain.deliveries("ponger-ping", target="subscriber")[-1]
    assert last.result is not None
    encoded = parked.message.attributes["knativeerrordata"]
    assert base64.b64decode(encoded) == last.result.body  # base64 of the 503's problem body
    assert last.result.problem == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "retry requested by handler",
    }

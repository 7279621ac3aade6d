"""NatsLog specifics: what a plain NATS client sees, offsets under two writers, commits as
durable JetStream consumers, and a server that is not there."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy
from scripts.nats_server import NatsServer, delete_stream, run_coroutine

from cascade.broker.event import StoredEvent
from cascade.broker.log.base import LogError
from cascade.broker.log.factory import open_log
from cascade.broker.log.jetstream import NatsLog, stream_name, subject_prefix

pytestmark = pytest.mark.nats


@pytest.fixture
def stream(nats_url: str) -> Iterator[str]:
    name = f"cascade-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_stream(nats_url, name)


def order(event_id: str, **extra: str) -> StoredEvent:
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/shop",
        "type": "order.created",
        "datacontenttype": "application/json",
        **extra,
    }
    return StoredEvent(attributes, b'{"total": 3}')


def test_names_follow_the_kafka_topic_template() -> None:
    assert stream_name("shop", "default") == "knative-broker-shop-default"
    # Stream names cannot hold dots; subjects use them as separators.
    assert stream_name("shop", "a.b") == "knative-broker-shop-a_b"
    assert subject_prefix("shop", "a.b") == "knative-broker.shop.a_b"


def test_messages_are_cloudevents_in_nats_binary_mode(nats_url: str, stream: str) -> None:
    log = NatsLog(nats_url, stream, stream, 2)
    try:
        partition, offset = log.append(
            order("order-1", subject="ünï code\r\n", partitionkey="customer-7"),
            {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )
    finally:
        log.close()

    async def fetch() -> tuple[str, dict[str, str], bytes]:
        client = await nats.connect(nats_url)
        try:
            message = await client.jetstream().get_msg(stream, seq=1)
            return message.subject or "", dict(message.headers or {}), message.data or b""
        finally:
            await client.close()

    subject, headers, data = run_coroutine(fetch())
    assert subject == f"{stream}.{partition}"
    assert data == b'{"total": 3}'
    assert headers["ce-id"] == "order-1"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-partitionkey"] == "customer-7"
    assert headers["Content-Type"] == "application/json"
    # Header values are text lines: anything else is percent-encoded as in the HTTP binding.
    assert headers["ce-subject"] == "%C3%BCn%C3%AF%20code%0D%0A"
    assert headers["traceparent"].startswith("00-0af7651916cd43dd")
    assert headers["Cascade-Offset"] == str(offset)


def test_two_writers_share_gap_free_offsets(nats_url: str, stream: str) -> None:
    first = NatsLog(nats_url, stream, stream, 1)
    second = NatsLog(nats_url, stream, stream, 1)
    positions: list[tuple[int, int]] = []
    lock = threading.Lock()

    def write(log: NatsLog, name: str) -> None:
        for i in range(30):
            position = log.append(order(f"{name}-{i}"))
            with lock:
                positions.append(position)

    try:
        threads = [
            threading.Thread(target=write, args=(log, name))
            for log, name in ((first, "a"), (second, "b"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(offset for _, offset in positions) == list(range(60))
        records = first.read(0, 0, 100)
        assert [r.offset for r in records] == list(range(60))
        assert {r.event.attributes["id"] for r in records} == {
            f"{name}-{i}" for name in "ab" for i in range(30)
        }
    finally:
        first.close()
        second.close()


def test_commits_are_durable_consumers_with_explicit_acks(nats_url: str, stream: str) -> None:
    log = NatsLog(nats_url, stream, stream, 2)
    try:
        positions = log.append_many([(order(f"e{i}", partitionkey="k"), None) for i in range(5)])
        partition = positions[0][0]
        log.commit("knative-trigger-shop.v1-fulfil", {partition: 3})
    finally:
        log.close()

    async def consumer() -> tuple[str, AckPolicy | None, str | None, int]:
        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            [info] = await js.consumers_info(stream)
            return (
                info.name,
                info.config.ack_policy,
                info.config.filter_subject,
                info.num_pending,
            )
        finally:
            await client.close()

    name, ack_policy, filter_subject, pending = run_coroutine(consumer())
    assert name == f"knative-trigger-shop=2Ev1-fulfil-p{partition}"
    assert ack_policy == AckPolicy.EXPLICIT
    assert filter_subject == f"{stream}.{partition}"
    assert pending == 2  # offsets 3 and 4 are not committed yet


def test_commit_cannot_move_back_or_past_the_end(nats_url: str, stream: str) -> None:
    log = NatsLog(nats_url, stream, stream, 1)
    try:
        log.append_many([(order(f"e{i}"), None) for i in range(4)])
        log.commit("g", {0: 3})
        with pytest.raises(LogError, match="cannot move it back to 1"):
            log.commit("g", {0: 1})
        with pytest.raises(LogError, match="beyond its end 4"):
            log.commit("other", {0: 9})
        assert log.committed("g", 0) == 3
        assert log.committed("other", 0) is None
    finally:
        log.close()


def test_commit_after_a_crash_mid_commit_acks_the_leftovers(nats_url: str, stream: str) -> None:
    """A commit fetched messages through the consumer and died before acking them: the next
    commit still acks exactly the offsets below it, once the leftovers are redelivered."""
    log = NatsLog(nats_url, stream, stream, 1)
    try:
        log.append_many([(order(f"e{i}"), None) for i in range(6)])
        log.commit("g", {0: 1})

        async def fetch_without_ack() -> None:
            client = await nats.connect(nats_url)
            try:
                subscription = await client.jetstream().pull_subscribe_bind("g-p0", stream)
                fetched = await subscription.fetch(3, timeout=5)
                assert len(fetched) == 3  # offsets 1..3, now pending on the consumer
            finally:
                await client.close()

        run_coroutine(fetch_without_ack())
        log.commit("g", {0: 5})
        assert log.committed("g", 0) == 5
        log.commit("g", {0: 6})
        assert log.committed("g", 0) == 6
    finally:
        log.close()


def test_a_commit_fetches_again_when_a_fetch_times_out_on_its_probe(
    nats_url: str, stream: str
) -> None:
    """nats-py's fetch raises asyncio's own TimeoutError, not nats.errors.TimeoutError, when
    its no-wait probe used up the timeout (a busy machine): the commit fetches again. Before
    the fix the commit failed with a LogError (1 run in 3 of this file under CPU load)."""
    log = NatsLog(nats_url, stream, stream, 1)
    try:
        log.append_many([(order(f"e{i}"), None) for i in range(6)])
        log.commit("g", {0: 1})
        log.commit("g", {0: 2})  # binds the commit's pull subscription
        consumer = log._consumer("g", 0)
        real = log._pull_subscriptions[consumer]

        class FirstFetchTimesOut:
            calls = 0

            async def fetch(self, *args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                if self.calls == 1:
                    raise TimeoutError
                return await real.fetch(*args, **kwargs)

        fake = FirstFetchTimesOut()
        log._pull_subscriptions[consumer] = fake  # type: ignore[assignment]
        log.commit("g", {0: 5})
        assert log.committed("g", 0) == 5
        assert fake.calls >= 2
    finally:
        log.close()


def test_existing_stream_with_other_partition_count_is_refused(nats_url: str, stream: str) -> None:
    NatsLog(nats_url, stream, stream, 2).close()
    with pytest.raises(LogError, match="has 2 partitions .* asked for 3"):
        NatsLog(nats_url, stream, stream, 3)


def test_unreachable_server_is_a_bounded_clear_log_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens once the socket closes
    started = time.monotonic()
    reason = rf"cannot reach the NATS server at nats://127.0.0.1:{port} \(ConnectionRefused"
    with pytest.raises(LogError, match=reason):
        NatsLog(f"nats://127.0.0.1:{port}", "unreachable", "unreachable", 1, timeout=2.0)
    assert time.monotonic() - started < 30  # bounded, not a hang


def test_a_server_without_jetstream_is_named(tmp_path: Path) -> None:
    with (
        NatsServer(tmp_path / "plain", jetstream=False) as server,
        pytest.raises(LogError, match=r"does not answer JetStream requests: .*nats-server -js"),
    ):
        NatsLog(server.url, "nojs", "nojs", 1, timeout=5.0)


def test_appends_fail_while_the_server_is_down_and_work_again_after(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "nats") as server:
        log = NatsLog(server.url, "outage", "outage", 2, timeout=2.0)
        try:
            stored = [log.append(order(f"before-{i}")) for i in range(4)]
            server.kill()
            with pytest.raises(LogError, match="NATS stream outage"):
                log.append(order("during"))
            server.start()  # same port, same JetStream files
            deadline = time.monotonic() + 30
            while True:
                try:
                    stored.append(log.append(order("after")))
                    break
                except LogError:
                    assert time.monotonic() < deadline, "no reconnect within 30 s"
                    time.sleep(0.2)
            ids = [r.event.attributes["id"] for p in range(2) for r in log.read(p, 0, 10)]
            assert sorted(ids) == sorted([f"before-{i}" for i in range(4)] + ["after"])
            assert len(set(stored)) == 5
        finally:
            log.close()


def test_factory_opens_the_knative_named_stream(nats_url: str, tmp_path: Path) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    log = open_log(
        "nats",
        namespace=namespace,
        broker="default",
        partitions=2,
        data_dir=tmp_path,
        nats_url=nats_url,
    )
    try:
        assert isinstance(log, NatsLog)
        assert log.stream == f"knative-broker-{namespace}-default"
        assert log.append(order("via-factory"))[1] == 0
    finally:
        log.close()
        delete_stream(nats_url, f"knative-broker-{namespace}-default")

"""Transactional publishing: ctx.publish commits with the handler's effects and the relay sends
after the commit, at least once, in order per partitionkey, with backoff, parking what the sink
refuses for good, safe with several relays on one store, inside the publisher's trace."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from sqlalchemy import String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cascade import Context, Event, Function, HttpContext, Retry, Settings
from cascade.outbox import Relay
from cascade.publish import Publisher
from cascade.testing import FunctionClient
from tests.integration.postgres import throwaway_schema
from tests.unit.runtime.sink import Sink


class Step(Event, type="com.example.outbox.step"):
    key: str
    n: int
    fail: bool = False


class Stepped(Event, type="com.example.outbox.stepped"):
    key: str
    n: int


class Base(DeclarativeBase):
    pass


class Seen(Base):
    __tablename__ = "outbox_test_seen"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)


fn = Function("outboxer", metadata=Base.metadata)


@fn.on(Step)
def step(event: Step, ctx: Context) -> None:
    ctx.store.add(Seen(id=f"{event.key}-{event.n}"))
    ctx.publish(Stepped(key=event.key, n=event.n), partitionkey=event.key)
    if event.fail:
        raise Retry(reason="asked to")


@fn.route("/steps/<key>/<int:n>", methods=["POST"])
def post_step(ctx: HttpContext, key: str, n: int) -> tuple[str, int]:
    ctx.publish(Stepped(key=key, n=n), partitionkey=key)
    return "", 201


def sent(sink: Sink) -> list[tuple[str, int]]:
    return [
        (Stepped.model_validate_json(data).key, Stepped.model_validate_json(data).n)
        for _, data in sink.requests
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A relay thread that only runs when a test asks: the tests drive passes by hand.
    return Settings(
        data_dir=tmp_path,
        outbox_poll_seconds=3600,
        publish_backoff_seconds=30,
        publish_backoff_max_seconds=30,
    )


@pytest.fixture
def quiet_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Relay, "start", lambda self: None)


def test_the_event_commits_with_the_effects_or_not_at_all(
    settings: Settings, quiet_relay: None
) -> None:
    with Sink() as sink, FunctionClient(fn, settings.with_overrides(sink=sink.url)) as client:
        assert client.send(Step(key="a", n=1), event_id="e-1").status == 204
        assert client.send(Step(key="a", n=1), event_id="e-1").status == 204  # a duplicate
        assert client.send(Step(key="a", n=2, fail=True), event_id="e-2").status == 503
        outbox = client.runtime.outbox
        assert outbox.pending() == 1  # the duplicate and the retried delivery wrote nothing
        with client.runtime.store.session() as session:
            assert session.scalars(select(Seen.id)).all() == ["a-1"]
        assert client.flush_outbox().published == 1
        assert sent(sink) == [("a", 1)]
        assert outbox.pending() == 0


def test_routes_publish_in_their_transaction(settings: Settings, quiet_relay: None) -> None:
    with Sink() as sink, FunctionClient(fn, settings.with_overrides(sink=sink.url)) as client:
        assert client.request("POST", "/steps/r/1").status == 201
        assert sink.requests == []  # sent by the relay, after the answer
        client.flush_outbox()
        [(headers, _)] = sink.requests
        assert headers["ce-type"] == "com.example.outbox.stepped"
        assert headers["ce-source"] == "/outboxer"
        assert headers["ce-partitionkey"] == "r"


def test_a_failing_key_holds_its_later_events_and_not_the_others(
    settings: Settings, quiet_relay: None
) -> None:
    with (
        Sink(statuses=[503]) as sink,
        FunctionClient(fn, settings.with_overrides(sink=sink.url)) as client,
    ):
        for key, n in [("a", 1), ("b", 1), ("a", 2), ("b", 2)]:
            assert client.request("POST", f"/steps/{key}/{n}").status == 201
        result = client.runtime.outbox.flush()
        assert (result.published, result.failed, result.pending) == (2, 1, 2)
        assert sent(sink) == [("a", 1), ("b", 1), ("b", 2)]  # a-1 refused once: a-2 waits
        with client.runtime.store.engine.begin() as connection:
            connection.execute(text("UPDATE cascade_outbox SET next_attempt_at = 0"))
        client.flush_outbox()
        assert sent(sink)[3:] == [("a", 1), ("a", 2)]
        assert client.runtime.outbox.pending() == 0


def test_a_refused_event_is_parked_with_its_reason(settings: Settings, quiet_relay: None) -> None:
    with (
        Sink(statuses=[400]) as sink,
        FunctionClient(fn, settings.with_overrides(sink=sink.url)) as client,
    ):
        client.request("POST", "/steps/a/1")
        client.request("POST", "/steps/a/2")
        client.flush_outbox()
        outbox = client.runtime.outbox
        assert (outbox.pending(), outbox.failed()) == (0, 1)
        assert sent(sink) == [("a", 1), ("a", 2)]  # a parked event does not block its key
        with client.runtime.store.engine.connect() as connection:
            error = connection.execute(text("SELECT last_error FROM cascade_outbox")).scalar_one()
        assert "HTTP 400" in error
        assert client.metric("cascade_outbox_failed", {"function": "outboxer"}) == 1


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    with throwaway_schema("outbox_test") as url:
        yield url


def test_two_relays_on_one_store_send_each_event_once_in_key_order(
    settings: Settings, quiet_relay: None, database_url: str | None
) -> None:
    with (
        Sink() as sink,
        FunctionClient(
            fn, settings.with_overrides(sink=sink.url, database_url=database_url)
        ) as client,
    ):
        for n in range(30):
            client.request("POST", f"/steps/k{n % 3}/{n}")
        runtime = client.runtime
        # A second worker: its own relay and publisher on the same tables.
        other = Relay(
            runtime.outbox,
            Publisher(sink.url, "/outboxer", retries=0),
            backoff_seconds=0.01,
            backoff_max_seconds=0.01,
            poll_seconds=3600,
        )
        assert runtime.relay is not None
        barrier = threading.Barrier(2)

        def drain(relay: Relay) -> None:
            barrier.wait()
            while relay.flush().published:
                pass

        threads = [threading.Thread(target=drain, args=(r,)) for r in (runtime.relay, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        other.publisher.close()
        events = sent(sink)
        assert sorted(events) == sorted((f"k{n % 3}", n) for n in range(30))  # once each
        for key in ("k0", "k1", "k2"):
            numbers = [n for k, n in events if k == key]
            assert numbers == sorted(numbers)


def test_a_dead_relays_claims_expire(settings: Settings, quiet_relay: None) -> None:
    with Sink() as sink, FunctionClient(fn, settings.with_overrides(sink=sink.url)) as client:
        client.request("POST", "/steps/a/1")
        with client.runtime.store.engine.begin() as connection:  # claimed by a worker now dead
            connection.execute(
                text("UPDATE cascade_outbox SET claimed_by = 'dead', claimed_until = :t"),
                {"t": 9e18},
            )
        assert client.flush_outbox().pending == 1
        with client.runtime.store.engine.begin() as connection:
            connection.execute(text("UPDATE cascade_outbox SET claimed_until = 0"))
        assert client.flush_outbox().published == 1
        assert sent(sink) == [("a", 1)]


def test_the_send_span_is_a_child_of_the_span_that_published(
    settings: Settings, quiet_relay: None
) -> None:
    with Sink() as sink, FunctionClient(fn, settings.with_overrides(sink=sink.url)) as client:
        client.send(Step(key="t", n=1))
        client.flush_outbox()
        spans = {span.name: span for span in client.spans()}
        process, send = (
            spans["process com.example.outbox.step"],
            spans["send com.example.outbox.stepped"],
        )
        assert send.kind is trace.SpanKind.PRODUCER
        assert send.parent is not None
        assert send.parent.span_id == process.context.span_id
        assert send.context.trace_id == process.context.trace_id
        [(headers, _)] = sink.requests
        assert headers["ce-traceparent"].split("-")[1] == f"{process.context.trace_id:032x}"


@pytest.mark.parametrize("via", ["route", "deduplicated event"])
def test_the_relay_thread_sends_after_each_commit(tmp_path: Path, via: str) -> None:
    with (
        Sink() as sink,
        FunctionClient(
            fn, Settings(data_dir=tmp_path, sink=sink.url, outbox_poll_seconds=3600)
        ) as client,
    ):
        if via == "route":
            client.request("POST", "/steps/w/1")
        else:  # the Session joins the dedupe transaction and its commit wakes the relay
            assert client.runtime.settings.idempotency
            assert client.send(Step(key="w", n=1), event_id="wake-1").status == 204
        done = threading.Event()
        for _ in range(3000):  # woken by the commit, not by the hour-long poll
            if sink.requests:
                done.set()
                break
            done.wait(0.01)
        assert sent(sink) == [("w", 1)]

"""Publisher: binary mode to K_SINK, bounded retries, trace context, errors never silent."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cascade.publish import Publisher, PublishError
from cascade.settings import Settings
from cascade.testing import FunctionClient
from tests.unit.runtime.sink import Sink


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def publisher(url: str | None, provider: TracerProvider | None = None, **kw: object) -> Publisher:
    sleeps: list[float] = []
    pub = Publisher(url, "/order", tracer_provider=provider, sleep=sleeps.append, **kw)  # type: ignore[arg-type]
    pub.sleeps = sleeps  # type: ignore[attr-defined]
    return pub


def test_binary_mode_with_partitionkey_and_trace_context(
    probe: ModuleType, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    with Sink() as sink, publisher(sink.url, provider) as pub:
        event_id = pub.publish(
            probe.Done(key="o-1", effects=1), partitionkey="o-1", subject="orders/o-1"
        )
    ((headers, body),) = sink.requests
    assert headers["ce-id"] == event_id
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "com.example.probe.done"
    assert headers["ce-source"] == "/order"
    assert headers["ce-partitionkey"] == "o-1"
    assert headers["ce-subject"] == "orders/o-1"
    assert headers["content-type"] == "application/json"
    assert orjson.loads(body) == {"key": "o-1", "effects": 1}
    (span,) = exporter.get_finished_spans()
    assert span.name == "send com.example.probe.done"
    assert span.kind is SpanKind.PRODUCER
    ids = f"{span.context.trace_id:032x}-{span.context.span_id:016x}"
    assert ids in headers["traceparent"]  # W3C header from the producer span
    assert ids in headers["ce-traceparent"]  # origin set once, here


@pytest.mark.parametrize("status", [500, 502, 503, 404, 408, 409, 429])
def test_retryable_statuses_are_retried(probe: ModuleType, status: int) -> None:
    with Sink([status, status]) as sink, publisher(sink.url, retries=3) as pub:
        pub.publish(probe.Done(key="k", effects=1))
    assert len(sink.requests) == 3
    assert len({h["ce-id"] for h, _ in sink.requests}) == 1  # same event every attempt
    assert len(pub.sleeps) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [400, 401, 403, 413, 415, 422])
def test_other_4xx_fail_at_once(probe: ModuleType, status: int) -> None:
    with (
        Sink([status]) as sink,
        publisher(sink.url, retries=3) as pub,
        pytest.raises(PublishError, match=f"HTTP {status}") as info,
    ):
        pub.publish(probe.Done(key="k", effects=1))
    assert info.value.status == status
    assert info.value.attempts == 1
    assert len(sink.requests) == 1


def test_gives_up_after_bounded_retries_with_growing_backoff(probe: ModuleType) -> None:
    with (
        Sink([503] * 10) as sink,
        publisher(sink.url, retries=4, backoff_seconds=0.1, backoff_max_seconds=0.4) as pub,
        pytest.raises(PublishError, match="after 5 attempts") as info,
    ):
        pub.publish(probe.Done(key="k", effects=1))
    assert info.value.status == 503
    assert len(sink.requests) == 5
    sleeps = pub.sleeps  # type: ignore[attr-defined]
    assert len(sleeps) == 4
    ceilings = [0.1, 0.2, 0.4, 0.4]  # doubling, capped
    for slept, ceiling in zip(sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling


def test_retry_after_is_honoured_up_to_the_cap(probe: ModuleType) -> None:
    with (
        Sink([429], headers={"Retry-After": "3"}) as sink,
        publisher(sink.url, backoff_max_seconds=2.0) as pub,
    ):
        pub.publish(probe.Done(key="k", effects=1))
    assert pub.sleeps == [2.0]  # type: ignore[attr-defined]


def test_connection_refused_is_retried_then_raised(probe: ModuleType) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with (
        publisher(f"http://127.0.0.1:{port}/", retries=2) as pub,
        pytest.raises(PublishError, match="unreachable after 3 attempts") as info,
    ):
        pub.publish(probe.Done(key="k", effects=1))
    assert info.value.status is None


def test_no_sink_raises(probe: ModuleType) -> None:
    with publisher(None) as pub, pytest.raises(PublishError, match="K_SINK"):
        pub.publish(probe.Done(key="k", effects=1))


def test_from_env_reads_sink_overrides_and_source(probe: ModuleType) -> None:
    with Sink() as sink:
        env = {
            "K_SINK": sink.url,
            "K_CE_OVERRIDES": '{"extensions": {"cluster": "local"}}',
            "CASCADE_SOURCE": "/from-env",
            "CASCADE_PUBLISH_RETRIES": "0",
        }
        with Publisher.from_env(settings=Settings.from_env(env)) as pub:
            assert pub.retries == 0
            pub.publish(probe.Done(key="k", effects=1), extensions={"tenant": "t"})
    ((headers, _),) = sink.requests
    assert headers["ce-cluster"] == "local"
    assert headers["ce-tenant"] == "t"
    assert headers["ce-source"] == "/from-env"


def test_from_env_source_falls_back_to_the_knative_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings.from_env({"K_SINK": "http://127.0.0.1:9/"})
    monkeypatch.delenv("K_SERVICE", raising=False)
    with pytest.raises(ValueError, match="CASCADE_SOURCE"):
        Publisher.from_env(settings=settings)
    monkeypatch.setenv("K_SERVICE", "order")
    with Publisher.from_env(settings=settings) as pub:
        assert pub.source == "/order"


def test_from_env_without_sink_is_a_clear_error() -> None:
    with pytest.raises(PublishError, match="K_SINK is not set"):
        Publisher.from_env("/x", settings=Settings.from_env({}))


@pytest.mark.parametrize(
    "extensions", [{"traceparent": "x"}, {"Bad": "x"}, {"partitionkey": "p"}, {"id": "1"}]
)
def test_reserved_or_invalid_extensions_are_refused(
    probe: ModuleType, extensions: dict[str, str]
) -> None:
    with publisher("http://127.0.0.1:9/") as pub, pytest.raises(ValueError, match="extension"):
        pub.publish(probe.Done(key="k", effects=1), extensions=extensions)


def test_handler_publishes_through_ctx_publisher(probe: ModuleType, tmp_path: Path) -> None:
    with Sink() as sink:
        settings = Settings(data_dir=tmp_path, sink=sink.url)
        with FunctionClient(probe.fn, settings) as client:
            result = client.send(
                probe.Command(action="publish", key="p1"),
                headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
            )
            assert result.status == 204
            (process,) = [s for s in client.spans() if s.name.startswith("process")]
            (send,) = [s for s in client.spans() if s.name.startswith("send")]
    ((headers, _),) = sink.requests
    assert headers["ce-source"] == "/probe"
    assert headers["ce-partitionkey"] == "p1"
    assert send.parent is not None
    assert send.parent.span_id == process.context.span_id  # one trace across the hop
    assert f"{send.context.span_id:016x}" in headers["traceparent"]


def test_handler_publish_failure_is_a_500_and_rolls_back(probe: ModuleType, tmp_path: Path) -> None:
    with Sink([400]) as sink:
        settings = Settings(data_dir=tmp_path, sink=sink.url)
        with FunctionClient(probe.fn, settings) as client:
            assert client.send(probe.Command(action="publish"), event_id="p").status == 500
            assert client.send(probe.Command(action="publish"), event_id="p").status == 204
            assert len(sink.requests) == 2  # the failed attempt did not dedupe the event

"""The span store, its OTLP/HTTP receiver, the waterfall and ``cascade trace``, in process."""

from __future__ import annotations

import gzip
import http.client
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from cascade.commands.trace import trace as trace_command
from cascade.telemetry.otlp import OTLPSpanExporter, encode_spans
from cascade.telemetry.tracing import CONVERSATION_ID, ORIGIN_LINK
from cascade.traces.receiver import TraceReceiver, traces_url
from cascade.traces.store import STORE_FILE, SpanStore, StoredSpan, spans_from_otlp
from cascade.traces.waterfall import TraceTree, render_trace, short_name
from tests.unit.telemetry.otlp_collector import Collector


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    with SpanStore(tmp_path / STORE_FILE) as opened:
        yield opened


@pytest.fixture
def receiver(store: SpanStore) -> Iterator[TraceReceiver]:
    running = TraceReceiver(store)
    running.start()
    try:
        yield running
    finally:
        running.close()


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/v1/traces", body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def make_saga(provider: TracerProvider) -> tuple[str, str]:
    """A small trace: API → publish → handler (linked to the publish) with a failed retry."""
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as root,
        tracer.start_as_current_span(
            "send com.example.shop.order.created",
            kind=SpanKind.PRODUCER,
            attributes={CONVERSATION_ID: "order-0001-aaaa"},
        ) as publish,
    ):
        origin = publish.get_span_context()
        for attempt in (1, 2):
            with tracer.start_as_current_span(
                "deliver default/inventory-order-created",
                kind=SpanKind.CLIENT,
                attributes={
                    "cascade.delivery.attempt": attempt,
                    CONVERSATION_ID: "order-0001-aaaa",
                },
            ) as deliver:
                if attempt == 1:
                    deliver.set_attribute("http.response.status_code", 503)
                    deliver.set_status(Status(StatusCode.ERROR, "retryable"))
                with tracer.start_as_current_span(
                    "process com.example.shop.order.created",
                    kind=SpanKind.CONSUMER,
                    links=[Link(origin, {"cascade.link": ORIGIN_LINK})],
                    attributes={
                        "cascade.outcome": "retry" if attempt == 1 else "replied",
                        CONVERSATION_ID: "order-0001-aaaa",
                    },
                ):
                    pass
    return f"{root.get_span_context().trace_id:032x}", f"{origin.span_id:016x}"


class Keep(OTLPSpanExporter):
    """Encodes like the real exporter, keeps the bodies instead of sending them."""

    def __init__(self) -> None:
        super().__init__(endpoint="http://127.0.0.1:9/v1/traces")
        self.bodies: list[bytes] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bodies.append(encode_spans(spans))
        return SpanExportResult.SUCCESS


def saga_bodies() -> tuple[str, list[bytes]]:
    keep = Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "order"}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    trace_id, _ = make_saga(provider)
    provider.shutdown()
    return trace_id, keep.bodies


def exporting_provider(endpoint: str, service: str = "order") -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def test_spans_exported_by_the_sdk_are_stored_with_their_edges_and_links(
    receiver: TraceReceiver, store: SpanStore
) -> None:
    provider = exporting_provider(traces_url(receiver.endpoint))
    trace_id, origin = make_saga(provider)
    provider.shutdown()
    spans = store.trace(trace_id)
    assert [s.name for s in spans][:2] == ["POST /orders", "send com.example.shop.order.created"]
    assert len(spans) == 6
    assert {s.service for s in spans} == {"order"}
    by_id = {s.span_id: s for s in spans}
    handlers = [s for s in spans if s.name.startswith("process")]
    assert len(handlers) == 2
    for handler in handlers:
        parent = by_id[handler.parent_span_id or ""]
        assert parent.name == "deliver default/inventory-order-created"
        (link,) = handler.links
        assert (link.trace_id, link.span_id) == (trace_id, origin)
        assert link.attributes == {"cascade.link": ORIGIN_LINK}
    attempts = sorted(
        s.attributes["cascade.delivery.attempt"] for s in spans if "deliver" in s.name
    )
    assert attempts == [1, 2]
    assert sum(s.error for s in spans) == 1
    assert store.traces_of("order-0001-aaaa") == [trace_id]
    assert store.traces_of("order-0") == []  # a prefix needs 8 characters at least
    assert store.traces_of("order-00") == [trace_id]
    assert store.traces_of("order-0001-aaaa-and-more") == []
    assert receiver.received == 6


def test_a_repeated_export_is_stored_once(receiver: TraceReceiver, store: SpanStore) -> None:
    _, bodies = saga_bodies()
    for _ in range(2):  # an exporter retrying after a lost answer sends the same spans again
        for body in bodies:
            status = post(receiver.endpoint, body, {"Content-Type": "application/x-protobuf"})[0]
            assert status == 200
    assert store.count() == 6


def test_gzip_is_accepted_and_bad_requests_get_otlp_errors(
    receiver: TraceReceiver, store: SpanStore
) -> None:
    _, bodies = saga_bodies()
    body = bodies[0]
    protobuf = {"Content-Type": "application/x-protobuf"}
    gzipped = {**protobuf, "Content-Encoding": "gzip"}
    assert post(receiver.endpoint, gzip.compress(body), gzipped) == (200, b"")
    assert store.count() == 1
    status, text = post(receiver.endpoint, b"{}", {"Content-Type": "application/json"})
    assert status == 415
    assert b"application/x-protobuf" in text
    status, text = post(receiver.endpoint, b"\xff\xff\xff", protobuf)
    assert status == 400
    assert b"not an OTLP" in text
    assert post(receiver.endpoint, b"xx", gzipped)[0] == 400
    assert post(receiver.endpoint, body, {**protobuf, "Content-Encoding": "br"})[0] == 400
    assert store.count() == 1


def test_spans_are_forwarded_unchanged_when_asked(store: SpanStore) -> None:
    collector = Collector()
    receiver = TraceReceiver(store, forward_to=collector.url)
    receiver.start()
    try:
        provider = exporting_provider(traces_url(receiver.endpoint))
        trace_id, _ = make_saga(provider)
        provider.shutdown()
        deadline = time.monotonic() + 10
        while len(collector.bodies) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        receiver.close()
        collector.close()
    forwarded = [span for _, body in collector.bodies for span in spans_from_otlp(body)]
    assert sorted(s.span_id for s in forwarded) == sorted(s.span_id for s in store.trace(trace_id))


def test_the_store_keeps_at_most_max_spans_and_drops_old_ones(tmp_path: Path) -> None:
    def span(number: int) -> StoredSpan:
        return StoredSpan(f"{number:032x}", f"{number:016x}", None, f"s{number}", 1, "svc", 0, 1)

    with SpanStore(tmp_path / "bounded.sqlite3", max_spans=5, max_age_seconds=60) as store:
        store.add([span(n) for n in range(1, 4)], now=1000.0)
        store.add([span(n) for n in range(4, 9)], now=1030.0)
        assert store.count() == 5
        assert [s.name for s in store.spans()] == ["s4", "s5", "s6", "s7", "s8"]
        store.add([span(9)], now=1095.0)  # the batch of t=1030 is now over 60 s old
        assert [s.name for s in store.spans()] == ["s9"]
    with pytest.raises(ValueError, match="max_spans"):
        SpanStore(tmp_path / "x.sqlite3", max_spans=0)
    with pytest.raises(FileNotFoundError):
        SpanStore(tmp_path / "missing.sqlite3", readonly=True)


def test_the_waterfall_nests_children_and_marks_orphans_and_retries() -> None:
    trace_id = "ab" * 16
    spans = [
        StoredSpan(
            trace_id,
            "0000000000000001",
            None,
            "POST /orders",
            2,
            "order",
            0,
            100_000_000,
            attributes={"http.response.status_code": 201},
        ),
        StoredSpan(
            trace_id,
            "0000000000000002",
            "0000000000000001",
            "deliver default/payment-inventory-reserved",
            3,
            "cascade-broker",
            10_000_000,
            20_000_000,
            status_code=2,
            attributes={
                "cascade.delivery.attempt": 3,
                "http.response.status_code": 503,
                "cascade.delivery.outcome": "retryable",
            },
        ),
        StoredSpan(
            trace_id,
            "0000000000000003",
            "00000000000000ff",
            "process com.example.shop.inventory.reserved",
            5,
            "payment",
            50_000_000,
            60_000_000,
            attributes={"cascade.outcome": "replied"},
        ),
    ]
    tree = TraceTree.of(spans)
    assert [s.span_id[-1] for _, s in tree.walk()] == ["1", "2", "3"]
    assert tree.orphans == {"0000000000000003"}
    text = render_trace(spans, width=10, unicode=False)
    lines = text.splitlines()
    assert lines[0] == f"trace {trace_id} · 3 spans · 100.0 ms · 1 error"
    assert lines[2].startswith("order ")
    assert "##########" in lines[2]  # the root spans the whole axis
    assert "  deliver default/payment-inventory-reserved" in lines[3]
    assert lines[3].endswith("503 retry #2 retryable")
    assert "process inventory.reserved (parent missing)" in lines[4]
    assert short_name("send com.example.shop.order.created") == "send order.created"


def test_cascade_trace_draws_an_order_lists_traces_and_says_when_nothing_matches(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    trace_id, bodies = saga_bodies()
    with SpanStore(data_dir / STORE_FILE) as store:
        for body in bodies:
            store.add(spans_from_otlp(body))
    runner = CliRunner()
    by_order = runner.invoke(trace_command, ["order-0", "--data-dir", str(data_dir)])
    assert by_order.exit_code == 1
    assert "no trace found for 'order-0'" in by_order.output
    by_prefix = runner.invoke(trace_command, ["order-0001", "--data-dir", str(data_dir)])
    assert by_prefix.exit_code == 0, by_prefix.output
    assert f"trace {trace_id} · order order-0001-aaaa · 6 spans" in by_prefix.output
    assert "process order.created" in by_prefix.output
    by_id = runner.invoke(trace_command, [trace_id.upper(), "--data-dir", str(data_dir), "--json"])
    assert by_id.exit_code == 0, by_id.output
    document = orjson.loads(by_id.output)
    assert document["trace_id"] == trace_id
    assert len(document["spans"]) == 6
    listed = runner.invoke(trace_command, ["--data-dir", str(data_dir)])
    assert listed.exit_code == 0
    assert f"{trace_id}  order-00      6       1  order: POST /orders" in listed.output
    missing = runner.invoke(trace_command, ["x", "--data-dir", str(tmp_path / "none")])
    assert missing.exit_code == 1
    assert "no span store" in missing.output


def test_the_receiver_answers_404_elsewhere(receiver: TraceReceiver) -> None:
    host, port = receiver.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/v1/metrics", body=b"x", headers={"Content-Length": "1"})
        assert connection.getresponse().status == 404
    finally:
        connection.close()

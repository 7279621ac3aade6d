"""The contract every function must pass: each folder under functions/ and examples/ with a
func.py is found automatically, and its declared sample events (``fn.example(...)``) drive it.

Adding a function means adding a folder; nothing here changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cascade import Function
from cascade.events import bound_type
from cascade.loader import load_function
from cascade.settings import Settings
from cascade.testing import EventResult, FunctionClient
from tests.unit.runtime.sink import Sink

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = sorted(
    path.parent.relative_to(ROOT).as_posix()
    for pattern in ("functions/*/func.py", "examples/*/func.py")
    for path in ROOT.glob(pattern)
)
PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{PARENT_TRACE}-b7ad6b7169203331-01"
ORIGIN = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_discovery_finds_the_example() -> None:
    assert "examples/greeter" in FOLDERS


@pytest.fixture(params=FOLDERS)
def function(request: pytest.FixtureRequest) -> Function:
    return load_function(ROOT / str(request.param))


@pytest.fixture
def client(function: Function, tmp_path: Path) -> Iterator[FunctionClient]:
    with Sink() as sink:  # functions that publish get a sink that accepts everything
        settings = Settings(data_dir=tmp_path, sink=sink.url, max_body_bytes=64 * 1024)
        with FunctionClient(function, settings) as c:
            yield c


def base_headers(event_type: str = "com.example.contract.unknown") -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/contract",
        "ce-type": event_type,
        "Content-Type": "application/json",
    }


def snapshot(client: FunctionClient) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the function declares."""
    metadata = client.function.metadata
    if metadata is None:
        return {}
    with client.runtime.store.session() as session:
        return {
            table.name: sorted((tuple(row) for row in session.execute(select(table))), key=repr)
            for table in metadata.sorted_tables
        }


def deliver_examples(client: FunctionClient, **kwargs: Any) -> list[EventResult]:
    return [
        client.send(example, event_id=f"example-{i}", **kwargs)
        for i, example in enumerate(client.function.examples)
    ]


# --------------------------------------------------------------------------- health & errors


def test_declares_examples(function: Function) -> None:
    assert function.examples, f"{function.name}: declare sample events with fn.example(...)"
    handled = {bound_type(type(e)) for e in function.examples}
    assert handled <= set(function.handlers)


def test_health(client: FunctionClient) -> None:
    assert client.get("/health/liveness").status == 200
    assert client.get("/health/readiness").status == 200
    metrics = client.get("/metrics")
    assert metrics.status == 200
    assert b"# TYPE cascade_events_total counter" in metrics.body


def test_not_a_cloudevent_is_400(client: FunctionClient) -> None:
    result = client.post({"Content-Type": "application/json"}, b"{}")
    assert result.status == 400
    assert result.problem is not None


@pytest.mark.parametrize("attribute", ["ce-id", "ce-source", "ce-type", "ce-specversion"])
def test_missing_attribute_is_400(client: FunctionClient, attribute: str) -> None:
    headers = base_headers()
    del headers[attribute]
    result = client.post(headers, b"{}")
    assert result.status == 400
    assert result.problem is not None
    assert attribute[3:] in result.problem["detail"]


def test_bad_source_is_400(client: FunctionClient) -> None:
    result = client.post({**base_headers(), "ce-source": "not a uri"}, b"{}")
    assert result.status == 400


def test_oversized_body_is_413(client: FunctionClient) -> None:
    result = client.post(base_headers(), b"[" + b"0," * 40000 + b"0]")
    assert result.status == 413


def test_batch_is_415(client: FunctionClient) -> None:
    result = client.post({"Content-Type": "application/cloudevents-batch+json"}, b"[]")
    assert result.status == 415


def test_unknown_type_is_422(client: FunctionClient) -> None:
    result = client.post(base_headers(), b"{}")
    assert result.status == 422
    assert result.headers["Kne-Reason"]


def test_invalid_data_is_422(client: FunctionClient, function: Function) -> None:
    for event_type in function.handlers:
        result = client.post(base_headers(event_type), b"[1, 2, 3]")
        assert result.status == 422, event_type
        assert result.headers["Kne-Reason"]


# --------------------------------------------------------------------------- examples


def test_examples_get_valid_replies(client: FunctionClient, function: Function) -> None:
    for example, result in zip(
        function.examples, deliver_examples(client, partitionkey="contract-key"), strict=True
    ):
        handler = function.handlers[bound_type(type(example))]
        assert result.status in (200, 204), (example, result.body)
        if result.status == 204:
            assert result.body == b""
            continue
        attributes = result.attributes
        assert attributes["specversion"] == "1.0"
        assert attributes["id"]
        assert attributes["source"]
        assert attributes["datacontenttype"] == "application/json"
        if handler.reply_types:
            assert attributes["type"] in {bound_type(t) for t in handler.reply_types}
        reply = result.reply()
        assert reply is not None
        assert attributes.get("partitionkey")  # inherited unless the handler chose one


def test_examples_are_idempotent(client: FunctionClient) -> None:
    first = deliver_examples(client)
    state = snapshot(client)
    again = deliver_examples(client)
    assert snapshot(client) == state, "a duplicate delivery changed the function's state"
    for one, two in zip(first, again, strict=True):
        assert (two.status, two.body) == (one.status, one.body)
        assert two.attributes == one.attributes
    duplicates = client.metric("cascade_duplicates_total", {"function": client.function.name})
    assert duplicates == len(first)


def test_trace_context_is_followed(client: FunctionClient) -> None:
    results = deliver_examples(
        client, headers={"traceparent": PARENT}, extensions={"traceparent": ORIGIN}
    )
    process_spans = [s for s in client.spans() if s.name.startswith("process ")]
    assert len(process_spans) == len(results)
    for span, result in zip(process_spans, results, strict=True):
        assert span.parent is not None
        assert f"{span.context.trace_id:032x}" == PARENT_TRACE
        assert [f"{link.context.trace_id:032x}" for link in span.links] == [ORIGIN[3:35]]
        if result.status == 200:
            assert result.attributes["traceparent"] == ORIGIN  # never rewritten
            assert PARENT_TRACE in result.headers["traceparent"]  # reply stays in the trace

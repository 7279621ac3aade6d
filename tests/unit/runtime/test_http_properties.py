"""Property tests on the HTTP binding: any request gets a defined answer, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade import Context, Event, Function
from cascade.settings import Settings
from cascade.testing import FunctionClient


class Anything(Event, type="com.example.prop.anything"):
    note: str | None = None


prop = Function("prop", idempotent=False)


@prop.on(Anything)
def accept(event: Anything, ctx: Context) -> None:
    return None


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionClient]:
    data_dir: Path = tmp_path_factory.mktemp("prop")
    with FunctionClient(prop, Settings(data_dir=data_dir, max_body_bytes=256)) as c:
        yield c


HEADER_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
ATTRIBUTE_VALUE = st.one_of(
    HEADER_VALUE,
    st.sampled_from(["1.0", "0.3", "/s", "com.example.prop.anything", "2024-01-01T00:00:00Z"]),
)
HEADER_NAME = st.sampled_from(
    [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-subject",
        "ce-dataschema",
        "ce-partitionkey",
        "ce-traceparent",
        "ce-x1",
        "ce-BAD",
        "ce-",
        "Content-Type",
        "traceparent",
        "baggage",
        "tracestate",
    ]
)
CONTENT_TYPE = st.sampled_from(
    [
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "application/cloudevents+xml",
        "text/plain",
        "",
        "application/json; charset=latin-1",
    ]
)
BODY = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda note: orjson.dumps({"note": note}), st.text(max_size=20)),
    st.builds(
        lambda d: orjson.dumps(d),
        st.dictionaries(
            st.sampled_from(["specversion", "id", "source", "type", "data", "time", "note"]),
            ATTRIBUTE_VALUE,
        ),
    ),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(HEADER_NAME, ATTRIBUTE_VALUE, max_size=10), CONTENT_TYPE, BODY)
def test_any_post_gets_a_defined_answer(
    client: FunctionClient, headers: dict[str, str], content_type: str, body: bytes
) -> None:
    headers.setdefault("Content-Type", content_type)
    result = client.post(headers, body)
    assert result.status in (204, 400, 413, 415, 422), result.body
    if result.status != 204:
        problem = result.problem
        assert problem is not None
        assert problem["status"] == result.status
        assert problem["detail"]


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    st.sampled_from(["/", "/health/liveness", "/health/readiness", "/metrics", "/x", "/%00"]),
    st.binary(max_size=50),
)
def test_any_method_and_path_never_500(
    client: FunctionClient, method: str, path: str, body: bytes
) -> None:
    result = client.request(method, path, data=body)
    assert result.status < 500


def test_valid_event_passes(client: FunctionClient) -> None:
    assert client.send(Anything(note="x")).status == 204

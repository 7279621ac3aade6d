"""Random requests at the ingress: only the status codes of §1, never a 500, never a hang."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conformance.conftest import StartBroker
from tests.conformance.harness import BrokerProcess, broker_manifest, request, trigger_manifest

ALLOWED = {202, 400, 404, 405, 503}
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
)
ATTRIBUTES = ["specversion", "id", "source", "type", "time", "dataschema", "subject", "x", "Ab_"]
HEADER_NAMES = st.text(
    alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=20
)
SPEC_VERSIONS = st.sampled_from(["1.0", "0.3", "0.2", "", "1.0 "])


@st.composite
def ce_header_sets(draw: st.DrawFn) -> dict[str, str]:
    headers = {"ce-specversion": draw(SPEC_VERSIONS)}
    for name in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=6, unique=True)):
        headers[f"ce-{name}"] = draw(HEADER_TEXT)
    if draw(st.booleans()):
        headers.update({"ce-id": "1", "ce-source": "/s", "ce-type": "t"})
    return headers


@st.composite
def structured_bodies(draw: st.DrawFn) -> bytes:
    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    )
    document = draw(
        st.dictionaries(st.sampled_from([*ATTRIBUTES, "data", "data_base64"]), json_values)
    )
    if draw(st.booleans()):
        document.update({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"})
    return json.dumps(document).encode()


REQUESTS = st.one_of(
    st.tuples(
        st.sampled_from(["POST", "POST", "GET", "PUT", "OPTIONS", "DELETE"]),
        st.sampled_from(["/fuzz/default", "/fuzz/default/", "/fuzz/other", "/", "/fuzz/default/x"]),
        ce_header_sets(),
        st.binary(max_size=64),
    ),
    st.tuples(
        st.just("POST"),
        st.just("/fuzz/default"),
        st.fixed_dictionaries(
            {
                "Content-Type": st.sampled_from(
                    [
                        "application/cloudevents+json",
                        "application/cloudevents+json; charset=utf-8",
                        "application/cloudevents-batch+json",
                        "application/cloudevents+xml",
                    ]
                )
            }
        ),
        st.one_of(structured_bodies(), st.binary(max_size=64)),
    ),
    st.tuples(
        st.just("POST"),
        st.text(alphabet="/abcfuz%20-.", max_size=20).map(lambda p: "/" + p),
        st.dictionaries(HEADER_NAMES, HEADER_TEXT, max_size=3),
        st.binary(max_size=16),
    ),
)


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker) -> BrokerProcess:
    return start_broker(
        [
            broker_manifest(namespace="fuzz"),
            trigger_manifest("sink", "http://127.0.0.1:9/", namespace="fuzz"),
        ],
        args=["--max-event-bytes", "200"],
    )


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sample=REQUESTS)
def test_ingress_answers_only_the_documented_codes(
    broker: BrokerProcess, sample: tuple[str, str, dict[str, str], bytes]
) -> None:
    method, path, headers, body = sample
    reply = request(broker.port, method, path, headers, body, timeout=10)
    assert reply.status in ALLOWED, (reply, sample)
    assert reply.body == b""
    assert broker.process is not None
    assert broker.process.poll() is None


def test_the_broker_survived_the_fuzzing(broker: BrokerProcess) -> None:
    assert request(broker.port, "GET", "/-/health").status == 200
    assert "Traceback" not in broker.output()

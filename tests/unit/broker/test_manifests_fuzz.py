"""Fuzzing the manifest loader: whatever the input, a Topology or a ManifestError, and fast.

Random text, YAML token soup, random nested structures and mutated valid manifests are written
to a file and loaded. Any other exception (TypeError, RecursionError, ...) or a hang fails.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.broker.topology import ManifestError, Topology, load_topology

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(
    max_examples=int(os.environ.get("CASCADE_FUZZ_EXAMPLES", "150")),
    deadline=None,  # timing on two shared cores is noisy; the module timeout bounds hangs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SERVICE_URLS = {("default", "payment"): "http://127.0.0.1:8101"}


@pytest.fixture(scope="module")
def manifest_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "m.yaml"


def outcome(path: Path) -> Topology | ManifestError:
    """Load ``path``; only a Topology or a ManifestError is an acceptable result."""
    result: Topology | ManifestError
    try:
        result = load_topology([path], service_urls=SERVICE_URLS)
    except ManifestError as err:
        result = err
    if isinstance(result, ManifestError):
        assert str(result).startswith(str(path))
        assert result.message
        return result
    topology = result
    for trigger in topology.triggers:
        assert (trigger.namespace, trigger.broker) in topology.brokers
        assert trigger.subscriber.startswith(("http://", "https://"))
        assert trigger.delivery.retry >= 0
    return topology


def load_text(path: Path, text: str) -> Topology | ManifestError:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return outcome(path)


# --- inputs -------------------------------------------------------------------------------

TOKENS = [
    "\n",
    "  ",
    "- ",
    ": ",
    "---\n",
    "...\n",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "<<: ",
    "!!str ",
    "!!int ",
    "!!binary ",
    "!!bool ",
    "!!float ",
    "!!timestamp ",
    "!!set ",
    "!!omap ",
    "!!python/object:os.system ",
    "? ",
    "|\n",
    ">-\n",
    "'",
    '"',
    "#",
    "\t",
    "null",
    "~",
    "true",
    "0x1F",
    "1e400",
    "2024-02-30",
    "PT0.2S",
    "PT-1",
    "apiVersion: eventing.knative.dev/v1\n",
    "apiVersion: serving.knative.dev/v1\n",
    "apiVersion: v1\n",
    "kind: Trigger\n",
    "kind: Broker\n",
    "kind: Service\n",
    "kind: List\n",
    "items:\n",
    "metadata:\n",
    "  name: t\n",
    "  name: default\n",
    "  namespace: x\n",
    "  annotations:\n",
    "    kafka.eventing.knative.dev/delivery.order: ordered\n",
    "spec:\n",
    "  broker: default\n",
    "  subscriber:\n",
    "    uri: http://127.0.0.1:1/\n",
    "    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: payment}\n",
    "  delivery:\n",
    "    retry: 3\n",
    "    backoffDelay: PT1S\n",
    "  filters:\n",
    "  - cesql: \"type = 'a'\"\n",
    "  filter: {attributes: {type: x}}\n",
]

FIELD_NAMES = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "annotations",
    "spec",
    "status",
    "url",
    "address",
    "broker",
    "brokerRef",
    "filter",
    "filters",
    "attributes",
    "exact",
    "prefix",
    "suffix",
    "all",
    "any",
    "not",
    "cesql",
    "type",
    "source",
    "subscriber",
    "ref",
    "uri",
    "CACerts",
    "audience",
    "delivery",
    "retry",
    "backoffPolicy",
    "backoffDelay",
    "timeout",
    "retryAfterMax",
    "format",
    "deadLetterSink",
    "config",
    "items",
    "kafka.eventing.knative.dev/delivery.order",
    "eventing.knative.dev/broker.class",
    "cascade.dev/url",
    "cascade.dev/reply-types",
]

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "",
            "default",
            "payment",
            "Kafka",
            "ordered",
            "unordered",
            "linear",
            "exponential",
            "PT0.2S",
            "P1M",
            "-PT1S",
            "http://127.0.0.1:1/",
            "/relative",
            "eventing.knative.dev/v1",
            "serving.knative.dev/v1",
            "Service",
            "Trigger",
            "Broker",
            "type = 'x'",
            "EXISTS(",
        ]
    )
)

KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=12) | st.integers(-3, 3)

NESTED = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=40,
)


@st.composite
def object_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """A document that looks like one of the kinds the loader reads, with random insides."""
    api_version, kind = draw(
        st.sampled_from(
            [
                ("eventing.knative.dev/v1", "Trigger"),
                ("eventing.knative.dev/v1", "Broker"),
                ("serving.knative.dev/v1", "Service"),
                ("v1", "List"),
                ("v1", "ConfigMap"),
            ]
        )
    )
    doc: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    doc["metadata"] = draw(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["default", "payment", "t"]) | SCALARS},
            optional={"namespace": SCALARS, "annotations": NESTED},
        )
    )
    doc["spec"] = draw(st.dictionaries(st.sampled_from(FIELD_NAMES), NESTED, max_size=6))
    if draw(st.booleans()):
        doc["status"] = draw(NESTED)
    if kind == "List":
        doc["items"] = draw(st.lists(NESTED, max_size=3))
    return doc


BROKER = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Broker",
    "metadata": {"name": "default"},
}
VALID_TRIGGER = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Trigger",
    "metadata": {
        "name": "orders",
        "annotations": {"kafka.eventing.knative.dev/delivery.order": "ordered"},
    },
    "spec": {
        "broker": "default",
        "filters": [{"any": [{"exact": {"type": "a"}}, {"not": {"prefix": {"source": "b"}}}]}],
        "subscriber": {
            "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "payment"},
            "uri": "/orders",
        },
        "delivery": {
            "retry": 3,
            "backoffPolicy": "linear",
            "backoffDelay": "PT1S",
            "timeout": "PT10S",
            "deadLetterSink": {"uri": "http://127.0.0.1:9/dls"},
        },
    },
}


def paths_of(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(paths_of(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(paths_of(child, (*prefix, index)))
    return found


@st.composite
def mutated_trigger(draw: st.DrawFn) -> dict[str, Any]:
    """The valid Trigger with one value replaced, or one key deleted."""
    doc = copy.deepcopy(VALID_TRIGGER)
    path = draw(st.sampled_from(paths_of(doc)[1:]))
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(NESTED)
    return doc


# --- properties ---------------------------------------------------------------------------


def test_the_unmutated_trigger_is_valid(manifest_file: Path) -> None:
    manifest_file.write_text(yaml.safe_dump_all([BROKER, VALID_TRIGGER]))
    result = outcome(manifest_file)
    assert isinstance(result, Topology)
    assert result.triggers[0].subscriber == "http://127.0.0.1:8101/orders"


@FUZZ
@given(text=st.text(max_size=400))
def test_random_text(manifest_file: Path, text: str) -> None:
    load_text(manifest_file, text)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes(manifest_file: Path, data: bytes) -> None:
    manifest_file.write_bytes(data)
    outcome(manifest_file)


@FUZZ
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=60))
def test_yaml_token_soup(manifest_file: Path, tokens: list[str]) -> None:
    load_text(manifest_file, "".join(tokens))


@FUZZ
@given(docs=st.lists(NESTED, min_size=1, max_size=3))
def test_random_nested_structures(manifest_file: Path, docs: list[object]) -> None:
    load_text(manifest_file, yaml.safe_dump_all(docs))


@FUZZ
@given(docs=st.lists(object_shaped(), min_size=1, max_size=4))
def test_random_objects_of_known_kinds(manifest_file: Path, docs: list[dict[str, Any]]) -> None:
    load_text(manifest_file, yaml.safe_dump_all([BROKER, *docs]))


@FUZZ
@given(doc=mutated_trigger())
def test_mutated_valid_trigger(manifest_file: Path, doc: dict[str, Any]) -> None:
    load_text(manifest_file, yaml.safe_dump_all([BROKER, doc]))

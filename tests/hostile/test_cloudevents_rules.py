"""Issue 10, rows 4 and 7 (attributes): JSON nested past the codec's depth is a 400 (a typed
event's data nested past what its model reads: 422), never a 500, in binary and structured mode,
in functions and the broker; attribute values with control characters (a NUL in ``ce-id``) are
refused with 400 before they reach a store that cannot hold them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from cascade.loader import load_module
from cascade.settings import Settings
from cascade.testing import FunctionClient
from tests.conformance.harness import BrokerProcess, broker_manifest, write_manifests
from tests.integration.postgres import throwaway_schema

ROOT = Path(__file__).resolve().parents[2]
DEEP = 300


def nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value


def binary(event_id: str = "r-1", **extra: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/hostile",
        "ce-type": "com.example.greeting.requested",
        "content-type": "application/json",
        **extra,
    }


def structured(data: object, **attributes: str) -> tuple[dict[str, str], bytes]:
    document = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/hostile",
        "type": "com.example.greeting.requested",
        "datacontenttype": "application/json",
        "data": data,
        **attributes,
    }
    # orjson refuses to write 300 levels; build the text by hand around the nested data.
    text = orjson.dumps({**document, "data": None}).decode()
    text = text.replace('"data":null', '"data":' + _deep_text(data))
    return {"content-type": "application/cloudevents+json"}, text.encode()


def _deep_text(value: object) -> str:
    depth = 0
    while isinstance(value, dict):
        depth, value = depth + 1, value["a"]
    return '{"a":' * depth + orjson.dumps(value).decode() + "}" * depth


@pytest.fixture
def greeter(tmp_path: Path) -> Iterator[FunctionClient]:
    module = load_module(ROOT / "examples" / "greeter")
    with FunctionClient(module.fn, Settings(data_dir=tmp_path, publish_retries=0)) as client:
        yield client


def test_structured_data_nested_300_deep_is_400_from_a_function(greeter: FunctionClient) -> None:
    answer = greeter.post(*structured(nested(DEEP)))
    assert answer.status == 400, answer.body


def test_typed_data_nested_300_deep_is_422_from_a_function(greeter: FunctionClient) -> None:
    body = b'{"name": "Ada", "extra": ' + _deep_text(nested(DEEP)).encode() + b"}"
    answer = greeter.post(binary(), body)
    assert answer.status == 422, answer.body
    assert b"recursion limit" in answer.body


@pytest.mark.parametrize("attribute", ["ce-id", "ce-source", "ce-type", "ce-subject"])
@pytest.mark.parametrize("control", ["\x00", "\x1b", "\x07", "\x7f", "\x9b"])
def test_an_attribute_with_a_control_character_is_400_from_a_function(
    greeter: FunctionClient, attribute: str, control: str
) -> None:
    headers = binary()
    headers[attribute] = f"bad{control}value"
    answer = greeter.post(headers, b'{"name": "Ada"}')
    assert answer.status == 400, (attribute, repr(control), answer.status, answer.body)


@pytest.mark.postgres
def test_a_nul_in_ce_id_is_400_on_postgresql_not_a_store_error(tmp_path: Path) -> None:
    with throwaway_schema("hostile") as url:
        for name in ("greeter", "dead-letter"):
            folder = ROOT / ("examples" if name == "greeter" else "functions") / name
            module = load_module(folder)
            settings = Settings(data_dir=tmp_path / name, database_url=url, publish_retries=0)
            with FunctionClient(module.fn, settings) as client:
                answer = client.post(binary("nul\x00id"), b'{"name": "Ada"}')
            assert answer.status == 400, (name, answer.status, answer.body)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    workdir = tmp_path_factory.mktemp("rules")
    manifests = write_manifests(workdir / "manifests.yaml", [broker_manifest()])
    process = BrokerProcess(manifests, workdir).start()
    yield process
    process.stop()


@pytest.mark.slow
def test_the_broker_ingress_refuses_deep_json_and_control_characters(
    broker: BrokerProcess,
) -> None:
    assert broker.send(*structured(nested(DEEP))).status == 400
    for control in ("\x00", "\x1b", "\x07"):
        headers = binary(f"id{control}x")
        assert broker.send(headers, b"{}").status == 400, repr(control)

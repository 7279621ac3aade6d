"""Issue 10, row 7 (store part): data that fits the model but not the store (a string longer
than its column, a NUL in PostgreSQL text, an integer past its column) is a 422, so the event
goes to the dead-letter sink with the reason instead of a 500 retried until it is dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from cascade.loader import load_module
from cascade.settings import Settings
from cascade.testing import FunctionClient
from tests.functions.conftest import ClientFactory
from tests.integration.postgres import throwaway_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def greeter_on_postgres(tmp_path: Path) -> Iterator[FunctionClient]:
    with throwaway_schema("hostile") as url:
        module = load_module(ROOT / "examples" / "greeter")
        settings = Settings(data_dir=tmp_path, database_url=url, publish_retries=0)
        with FunctionClient(module.fn, settings) as client:
            yield client


def greeting(event_id: str, name: str) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/hostile",
        "ce-type": "com.example.greeting.requested",
        "content-type": "application/json",
    }
    return headers, orjson.dumps({"name": name})


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("name", "refused"),
    [("x" * 300, "value too long"), ("Ada\0Lovelace", "NUL")],
    ids=["longer-than-its-column", "nul"],
)
def test_data_the_store_refuses_is_a_dead_letter_with_the_reason(
    greeter_on_postgres: FunctionClient, name: str, refused: str
) -> None:
    answer = greeter_on_postgres.post(*greeting("fit-1", name))
    assert answer.status == 422, answer.body
    assert refused in answer.headers.get("Kne-Reason", ""), answer.headers
    # the same function keeps serving (the failed transaction was rolled back)
    fine = greeter_on_postgres.post(*greeting("fit-2", "Ada"))
    assert fine.status == 200, fine.body


@pytest.mark.parametrize("dead_letter_id", [2**63, 2**64 + 1])
def test_an_id_past_its_column_in_a_route_is_422_not_500(
    make_client: ClientFactory, database_url: str | None, dead_letter_id: int
) -> None:
    sink = make_client("dead-letter", database_url=database_url)
    answer = sink.get(f"/dead-letters/{dead_letter_id}")
    assert answer.status in (404, 422), answer.body

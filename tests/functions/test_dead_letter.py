"""dead-letter: stores any dead-lettered CloudEvent exactly as the broker sends it (built here by
the broker's own dead_letter_event) and serves it back for inspection and replay."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from cascade.broker.dispatch.dead_letter import dead_letter_event
from cascade.broker.dispatch.delivery import HttpResponse
from cascade.broker.event import StoredEvent
from cascade.codec import binary_headers
from cascade.testing import EventResult, FunctionClient
from functions.shop import samples
from tests.functions.conftest import ClientFactory, body

PAYMENT = "http://payment.default.svc/"
INVENTORY = "http://inventory.default.svc/"


@pytest.fixture
def client(make_client: ClientFactory) -> FunctionClient:
    return make_client("dead-letter")


def original(
    event_id: str = "ev-1",
    event_type: str = "com.example.shop.inventory.reserved",
    data: bytes | None = None,
    **extra: str,
) -> StoredEvent:
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/inventory",
        "type": event_type,
        "time": "2025-01-01T12:00:00Z",
        "datacontenttype": "application/json",
        "partitionkey": "order-1",
        **extra,
    }
    if data is None:
        data = samples.inventory_reserved("order-1", {"MUG": 1}).to_json_bytes()
    return StoredEvent(attributes, data)


def park(
    client: FunctionClient,
    event: StoredEvent,
    dest: str = PAYMENT,
    response: HttpResponse | None = None,
) -> EventResult:
    """POST what the broker would send to the sink after ``dest`` failed with ``response``."""
    letter = dead_letter_event(event, dest, response)
    return client.post(binary_headers(letter.attributes), letter.data, path="/dead-letters")


def listed(client: FunctionClient, query: str = "") -> list[dict[str, Any]]:
    result = client.get(f"/dead-letters{query}")
    assert result.status == 200
    rows: list[dict[str, Any]] = body(result)["dead_letters"]
    return rows


REFUSED = HttpResponse(
    422,
    {"Kne-Reason": "data does not match InventoryReserved", "Content-Type": "application/json"},
    b'{"title": "Unprocessable Content", "status": 422}',
)


def test_stores_a_dead_letter_with_the_error_extensions(client: FunctionClient) -> None:
    result = park(client, original(), response=REFUSED)
    assert (result.status, result.body) == (204, b"")
    [row] = listed(client)
    assert row == {
        "id": row["id"],
        "type": "com.example.shop.inventory.reserved",
        "source": "/inventory",
        "event_id": "ev-1",
        "order_id": "order-1",
        "partitionkey": "order-1",
        "error_code": "422",
        "reason": "data does not match InventoryReserved",
        "dest": PAYMENT,
        "replayable": True,
        "time": row["time"],
        "last_time": row["time"],
        "arrivals": 1,
        "replay_count": 0,
        "last_replayed_at": None,
        "order_state": None,
    }
    detail = body(client.get(f"/dead-letters/{row['id']}"))
    assert detail["error_data"]["json"] == {"title": "Unprocessable Content", "status": 422}
    assert detail["error_data"]["text"].startswith('{"title"')
    event = detail["event"]
    # The original event, as it was before the broker added its error extensions.
    assert event["attributes"] == original().attributes
    assert event["data"] == orjson.loads(original().data)
    assert base64.b64decode(event["data_base64"]) == original().data  # byte-exact, for replay


def test_a_timeout_leaves_only_the_destination(client: FunctionClient) -> None:
    park(client, original(), response=None)
    [row] = listed(client)
    assert (row["error_code"], row["reason"], row["dest"]) == (None, None, PAYMENT)
    assert body(client.get(f"/dead-letters/{row['id']}"))["error_data"] is None


def test_accepts_any_type_and_any_data(client: FunctionClient) -> None:
    text = original(
        "t-1", "org.example.other.thing", "héllo".encode(), datacontenttype="text/plain"
    )
    raw = original("b-1", "x", bytes(range(256)), datacontenttype="application/octet-stream")
    broken = original("j-1", data=b"{not json")
    empty = original("e-1", data=b"")
    for event in (text, raw, broken, empty):
        assert park(client, event, response=REFUSED).status == 204
    by_id = {row["event_id"]: row["id"] for row in listed(client)}
    assert body(client.get(f"/dead-letters/{by_id['t-1']}"))["event"]["data"] == "héllo"
    binary = body(client.get(f"/dead-letters/{by_id['b-1']}"))["event"]
    assert base64.b64decode(binary["data_base64"]) == bytes(range(256))
    assert binary["data"] is None  # nothing readable, the bytes are all there
    kept = body(client.get(f"/dead-letters/{by_id['j-1']}"))["event"]
    assert (kept["data"], base64.b64decode(kept["data_base64"])) == (None, b"{not json")
    nothing = body(client.get(f"/dead-letters/{by_id['e-1']}"))["event"]
    assert (nothing["data"], nothing["data_base64"]) == (None, None)


def test_structured_mode_is_accepted(client: FunctionClient) -> None:
    document = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/order",
        "type": "com.example.shop.order.created",
        "knativeerrordest": INVENTORY,
        "knativeerrorcode": "500",
        "data": {"order_id": "order-9"},
    }
    result = client.post(
        {"Content-Type": "application/cloudevents+json"}, orjson.dumps(document), "/dead-letters"
    )
    assert result.status == 204
    [row] = listed(client)
    assert (row["order_id"], row["error_code"], row["dest"]) == ("order-9", "500", INVENTORY)


def test_one_entry_per_event_and_destination(client: FunctionClient) -> None:
    park(client, original(), PAYMENT, REFUSED)
    park(client, original(), PAYMENT, HttpResponse(500, {}, b"boom"))  # the DLS send repeated
    park(client, original(), INVENTORY, REFUSED)  # the same event failed at another Trigger
    rows = listed(client)
    assert sorted((r["dest"], r["arrivals"]) for r in rows) == [(INVENTORY, 1), (PAYMENT, 2)]
    payment = next(r for r in rows if r["dest"] == PAYMENT)
    assert payment["error_code"] == "500"  # the latest failure is shown
    assert payment["reason"] is None


def test_an_event_without_destination_is_kept_but_not_replayable(client: FunctionClient) -> None:
    event = original()
    result = client.post(binary_headers(event.attributes), event.data, path="/dead-letters")
    assert result.status == 204
    [row] = listed(client)
    assert (row["dest"], row["replayable"]) == (None, False)


@pytest.mark.parametrize(
    ("headers", "data", "status"),
    [
        ({"Content-Type": "application/json"}, b"{}", 400),
        ({"Content-Type": "application/cloudevents+json"}, b"[1]", 400),
        ({"Content-Type": "application/cloudevents-batch+json"}, b"[]", 415),
        ({"ce-specversion": "1.0", "ce-id": "x", "ce-type": "t"}, b"", 400),
    ],
)
def test_what_is_not_a_cloudevent_is_refused(
    client: FunctionClient, headers: dict[str, str], data: bytes, status: int
) -> None:
    result = client.post(headers, data, path="/dead-letters")
    assert result.status == status
    assert result.problem is not None
    assert listed(client) == []


def test_counting_replays(client: FunctionClient) -> None:
    park(client, original(), response=REFUSED)
    [row] = listed(client)
    for expected in (1, 2):
        result = client.request("POST", f"/dead-letters/{row['id']}/replayed")
        assert result.status == 200
        assert body(result)["replay_count"] == expected
        assert body(result)["last_replayed_at"]
    assert listed(client)[0]["replay_count"] == 2
    assert client.request("POST", "/dead-letters/999/replayed").status == 404
    assert client.get("/dead-letters/999").status == 404


def test_list_filters_and_limits(client: FunctionClient) -> None:
    park(client, original("a"), response=REFUSED)
    park(client, original("b", "com.example.shop.order.created"), response=REFUSED)
    park(client, original("c", partitionkey="order-2"), response=REFUSED)
    assert [r["event_id"] for r in listed(client)] == ["c", "b", "a"]  # newest first
    assert [r["event_id"] for r in listed(client, "?order_id=order-2")] == ["c"]
    assert [r["event_id"] for r in listed(client, "?partitionkey=order-2")] == ["c"]
    assert [r["partitionkey"] for r in listed(client)] == ["order-2", "order-1", "order-1"]
    assert listed(client, "?partitionkey=nobody") == []
    assert [r["event_id"] for r in listed(client, "?type=com.example.shop.order.created")] == ["b"]
    assert len(listed(client, "?limit=2")) == 2
    for query in ("?limit=0", "?limit=x", "?limit=501", "?limit=%C2%B2"):
        assert client.get(f"/dead-letters{query}").status == 400


def test_shows_the_final_state_of_the_order(client: FunctionClient) -> None:
    park(client, original(), response=REFUSED)
    assert listed(client)[0]["order_state"] is None
    assert client.send(samples.order_confirmed("order-1", {"MUG": 1})).status == 204
    assert listed(client)[0]["order_state"] == "CONFIRMED"
    # A contradicting announcement later does not rewrite it.
    assert client.send(samples.order_cancelled("order-1", {"MUG": 1})).status == 204
    assert listed(client)[0]["order_state"] == "CONFIRMED"


def test_the_cloudevents_endpoint_is_not_the_sink(client: FunctionClient) -> None:
    letter = dead_letter_event(original(), PAYMENT, REFUSED)
    result = client.post(binary_headers(letter.attributes), letter.data)  # POST /
    assert result.status == 422  # typed handlers only: dead letters go to /dead-letters
    assert listed(client) == []

"""Plain HTTP routes beside the CloudEvents endpoint (an order API that originates events)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import abort
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from cascade import Event, Function, HttpContext
from cascade.settings import Settings
from cascade.testing import FunctionClient
from tests.unit.runtime.sink import Sink

metadata = MetaData()
orders = Table(
    "routes_orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("item", String(50)),
)


class OrderPlaced(Event, type="com.example.routes.order.placed"):
    order_id: int
    item: str


api = Function("routes", metadata=metadata)


@api.on(OrderPlaced)
def ignore(event: OrderPlaced) -> None:
    return None


@api.route("/orders", methods=["POST"])
def place(ctx: HttpContext) -> tuple[dict[str, object], int]:
    payload = ctx.request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("item"), str):
        abort(400, "body must be {'item': str}")
    order_id = ctx.store.execute(insert(orders).values(item=payload["item"])).inserted_primary_key
    assert order_id is not None
    ctx.publisher.publish(OrderPlaced(order_id=order_id[0], item=payload["item"]))
    return {"id": order_id[0]}, 201


@api.route("/orders/count")
def count(ctx: HttpContext) -> dict[str, int]:
    return {"count": int(ctx.store.scalar(select(func.count()).select_from(orders)) or 0)}


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as s:
        yield s


@pytest.fixture
def client(sink: Sink, tmp_path: Path) -> Iterator[FunctionClient]:
    with FunctionClient(api, Settings(data_dir=tmp_path, sink=sink.url)) as c:
        yield c


def test_route_commits_and_publishes(client: FunctionClient, sink: Sink) -> None:
    response = client.http.post("/orders", json={"item": "book"})
    assert response.status_code == 201
    assert response.get_json() == {"id": 1}
    assert client.get("/orders/count").body == b'{"count":1}\n'
    ((headers, _),) = sink.requests
    assert headers["ce-type"] == "com.example.routes.order.placed"
    (server_span,) = [s for s in client.spans() if s.name == "POST /orders"]
    (send_span,) = [s for s in client.spans() if s.name.startswith("send")]
    assert send_span.parent is not None
    assert send_span.parent.span_id == server_span.context.span_id


def test_failed_publish_rolls_back_the_route(client: FunctionClient, sink: Sink) -> None:
    sink.statuses = [400]
    response = client.http.post("/orders", json={"item": "book"})
    assert response.status_code == 500
    assert response.get_json()["detail"].startswith("internal error")
    assert client.get("/orders/count").body == b'{"count":0}\n'


def test_route_errors_are_problem_documents(client: FunctionClient) -> None:
    response = client.http.post("/orders", data=b"not json", content_type="application/json")
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert "item" in response.get_json()["detail"]
    assert client.request("DELETE", "/orders").status == 405


def test_a_reading_route_does_not_wait_behind_a_writer(client: FunctionClient) -> None:
    """GET routes read in a deferred transaction: while another connection holds SQLite's
    write lock with an uncommitted row, GET answers from the last commit instead of queuing
    for the lock (up to the 30 s busy timeout); a POST still waits for it."""
    assert client.http.post("/orders", json={"item": "book"}).status_code == 201
    writer = sqlite3.connect(client.runtime.store.engine.url.database or "", timeout=30)
    writer.isolation_level = None
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO routes_orders (item) VALUES ('not committed')")
    answers: dict[str, Any] = {}

    def ask(method: str, path: str, **kwargs: Any) -> None:
        answers[method] = client.http.open(path, method=method, **kwargs)

    reader = threading.Thread(target=ask, args=("GET", "/orders/count"))
    poster = threading.Thread(target=ask, args=("POST", "/orders"), kwargs={"json": {"item": "x"}})
    try:
        reader.start()
        poster.start()
        reader.join(timeout=20)
        assert not reader.is_alive(), "GET waited for the write lock"
        assert answers["GET"].get_json() == {"count": 1}
        assert poster.is_alive(), "POST did not wait for the write lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        poster.join(timeout=30)
    assert answers["POST"].status_code == 201
    assert client.get("/orders/count").body == b'{"count":2}\n'

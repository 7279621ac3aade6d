"""Catch-all handlers (@fn.on_any): any event, as it came, at POST / (types without a typed
handler) or at a CloudEvents endpoint of their own."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from cascade import CloudEvent, Context, Event, Function, Settings
from cascade.testing import FunctionClient


class Known(Event, type="com.example.any.known"):
    n: int


class Archived(Event, type="com.example.any.archived"):
    type_seen: str


def make() -> tuple[Function, list[CloudEvent]]:
    fn = Function("catcher")
    seen: list[CloudEvent] = []

    @fn.on(Known)
    def known(event: Known) -> None:
        return None

    @fn.on_any
    def anything(event: CloudEvent, ctx: Context) -> Archived:
        seen.append(event)
        return Archived(type_seen=event.type)

    @fn.on_any(path="/sink", idempotent=False)
    def sink(event: CloudEvent) -> None:
        seen.append(event)

    return fn, seen


def binary(event_type: str, content_type: str, event_id: str = "e-1") -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/test",
        "ce-type": event_type,
        "ce-partitionkey": "p-1",
        "Content-Type": content_type,
    }


def test_root_catch_all_gets_types_without_a_handler(tmp_path: Path) -> None:
    fn, seen = make()
    with FunctionClient(fn, Settings(data_dir=tmp_path)) as client:
        assert client.send(Known(n=1)).status == 204  # the typed handler keeps its type
        assert seen == []
        result = client.post(binary("com.example.other", "application/octet-stream"), b"\x00\x01")
        assert result.status == 200
        assert result.reply(Archived).type_seen == "com.example.other"
        [event] = seen
        assert (event.data, event.is_json, event.partitionkey) == (b"\x00\x01", False, "p-1")
        with pytest.raises(ValueError, match="not JSON"):
            event.json()
        # Deduped like any handler: the same event again gets the stored reply.
        again = client.post(binary("com.example.other", "application/octet-stream"), b"\x00\x01")
        assert again.body == result.body
        assert len(seen) == 1
        # Types it handles this way are counted as "other": a sender cannot grow the labels.
        labels = {"function": "catcher", "type": "other", "outcome": "replied"}
        assert client.metric("cascade_events_total", labels) == 1


def test_a_path_of_its_own_takes_every_type_every_time(tmp_path: Path) -> None:
    fn, seen = make()
    with FunctionClient(fn, Settings(data_dir=tmp_path)) as client:
        data = orjson.dumps({"n": 3})
        for _ in range(2):  # idempotent=False: each delivery runs
            result = client.post(
                binary(Known.ce_type or "", "application/json"), data, path="/sink"
            )
            assert result.status == 204
        assert [(e.type, e.json()) for e in seen] == [(Known.ce_type, {"n": 3})] * 2
        structured = orjson.dumps(
            {"specversion": "1.0", "id": "s-1", "source": "/t", "type": "x.y", "data": {"a": 1}}
        )
        assert (
            client.post(
                {"Content-Type": "application/cloudevents+json"}, structured, "/sink"
            ).status
            == 204
        )
        assert seen[-1].json() == {"a": 1}
        assert client.post({"Content-Type": "application/json"}, b"{}", "/sink").status == 400
        assert client.get("/sink").status == 405
        spans = [s for s in client.spans() if s.name == "process x.y"]
        assert len(spans) == 1  # handled as an event: a CONSUMER span, not an HTTP route's


def test_an_idempotent_path_dedupes_apart_from_the_root(tmp_path: Path) -> None:
    fn = Function("apart")
    runs: list[str] = []

    @fn.on_any
    def root(event: CloudEvent) -> None:
        runs.append("root")

    @fn.on_any(path="/archive")
    def archive(event: CloudEvent) -> None:
        runs.append("archive")

    with FunctionClient(fn, Settings(data_dir=tmp_path)) as client:
        headers = binary("a.b", "application/json")
        for path in ("/", "/archive", "/", "/archive"):
            assert client.post(headers, b"{}", path).status == 204
        assert runs == ["root", "archive"]  # once per endpoint


def test_registration_mistakes_are_refused() -> None:
    fn = Function("mistakes")
    fn.on_any(path="/x")(lambda event: None)
    with pytest.raises(ValueError, match="already has a catch-all"):
        fn.on_any(path="/x")(lambda event: None)
    with pytest.raises(ValueError, match="reserved"):
        fn.on_any(path="/health/ready")(lambda event: None)
    with pytest.raises(ValueError, match="start with"):
        fn.on_any(path="x")(lambda event: None)

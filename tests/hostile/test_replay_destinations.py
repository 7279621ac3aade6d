"""Issue 10, row 1: ``cascade dlq replay`` sends a stored event only to a subscriber the broker
routes to, and forwards an answer to the broker only from such a subscriber. A forged dead letter
naming another URL is refused (exit 1, the URL named) unless the operator allows it."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from cascade.commands.dlq import dlq
from tests.conformance.harness import broker_manifest, trigger_manifest, write_manifests
from tests.thread_server import QuietHandler, ThreadServer


@dataclass
class Recorder:
    posts: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, headers: dict[str, str]) -> None:
        with self.lock:
            self.posts.append((path, headers))


def serve(
    recorder: Recorder, get: dict[str, Any], answer: tuple[int, dict[str, str]]
) -> ThreadServer:
    """GET paths answer the JSON in ``get``; every POST is recorded and answered ``answer``."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            document = get.get(self.path.split("?")[0])
            body = orjson.dumps(document)
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            recorder.add(self.path, {k.lower(): v for k, v in self.headers.items()})
            status, headers = answer
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return ThreadServer(Handler)


FORGED_REPLY = {
    "ce-specversion": "1.0",
    "ce-id": "forged-1",
    "ce-source": "/payment",
    "ce-type": "com.example.shop.payment.authorized",
}


@dataclass
class World:
    sink: str
    broker_ingress: str
    subscriber: str
    attacker: str
    to_broker: Recorder
    to_subscriber: Recorder
    to_attacker: Recorder
    dead_letters: dict[str, Any]


@pytest.fixture
def world() -> Iterator[World]:
    to_broker, to_subscriber, to_attacker, to_sink = Recorder(), Recorder(), Recorder(), Recorder()
    with (
        serve(to_subscriber, {}, (204, {})) as subscriber,
        serve(to_attacker, {}, (200, FORGED_REPLY)) as attacker,
    ):
        triggers = [{"namespace": "default", "name": "payment", "subscriber": subscriber.url + "/"}]
        dead_letters: dict[str, Any] = {}
        with (
            serve(to_broker, {"/-/triggers": triggers}, (202, {})) as broker,
            serve(to_sink, dead_letters, (200, {})) as sink,
        ):
            yield World(
                sink.url,
                broker.url + "/default/shop",
                subscriber.url + "/",
                attacker.url + "/",
                to_broker,
                to_subscriber,
                to_attacker,
                dead_letters,
            )


def park(world: World, dead_letter_id: int, dest: str) -> None:
    """A dead letter as the sink serves it, failed at ``dest``."""
    detail = {
        "id": dead_letter_id,
        "type": "com.example.shop.inventory.reserved",
        "event_id": f"ev-{dead_letter_id}",
        "dest": dest,
        "replay_count": 0,
        "event": {
            "attributes": {
                "specversion": "1.0",
                "id": f"ev-{dead_letter_id}",
                "source": "/inventory",
                "type": "com.example.shop.inventory.reserved",
            },
            "data_base64": base64.b64encode(b"{}").decode(),
        },
    }
    world.dead_letters[f"/dead-letters/{dead_letter_id}"] = detail
    world.dead_letters["/dead-letters"] = {
        "dead_letters": [
            {k: v for k, v in d.items() if k != "event"}
            for key, d in world.dead_letters.items()
            if key.startswith("/dead-letters/")
        ]
    }


def replay(world: World, tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(
        dlq,
        [
            "--url",
            world.sink,
            "--data-dir",
            str(tmp_path),
            "replay",
            "--broker-url",
            world.broker_ingress,
            *args,
        ],
    )


def test_a_forged_destination_is_refused_and_nothing_is_sent(world: World, tmp_path: Path) -> None:
    park(world, 1, world.attacker)
    result = replay(world, tmp_path, "1")
    assert result.exit_code == 1, result.output
    assert world.attacker in result.output
    assert "--allow-destination" in result.output
    assert world.to_attacker.posts == []
    assert world.to_broker.posts == []  # no forged payment.authorized reached the broker


def test_a_known_subscriber_is_replayed(world: World, tmp_path: Path) -> None:
    park(world, 2, world.subscriber)
    result = replay(world, tmp_path, "2")
    assert result.exit_code == 0, result.output
    assert len(world.to_subscriber.posts) == 1


def test_the_operator_may_allow_a_destination(world: World, tmp_path: Path) -> None:
    park(world, 3, world.attacker)
    result = replay(world, tmp_path, "3", "--allow-destination", world.attacker)
    assert result.exit_code == 0, result.output
    assert len(world.to_attacker.posts) == 1


def test_all_replays_known_ones_and_refuses_the_rest(world: World, tmp_path: Path) -> None:
    park(world, 4, world.subscriber)
    park(world, 5, world.attacker)
    result = replay(world, tmp_path, "--all")
    assert result.exit_code == 1, result.output
    assert len(world.to_subscriber.posts) == 1
    assert world.to_attacker.posts == []
    assert world.attacker in result.output


def test_the_subscribers_may_come_from_the_manifests(world: World, tmp_path: Path) -> None:
    manifests = write_manifests(
        tmp_path / "shop.yaml",
        [
            broker_manifest("shop", "default"),
            trigger_manifest("payment", world.subscriber, namespace="default", broker="shop"),
        ],
    )
    park(world, 6, world.subscriber)
    park(world, 7, world.attacker)
    known = replay(world, tmp_path, "6", "--manifests", str(manifests))
    assert known.exit_code == 0, known.output
    forged = replay(world, tmp_path, "7", "--manifests", str(manifests))
    assert forged.exit_code == 1, forged.output
    assert world.to_attacker.posts == []

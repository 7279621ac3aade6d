"""Black-box harness: the `cascade broker` process, a programmable recording subscriber, manifests.

The broker is started as a real process on a free port and stopped by PID; the subscriber is a
real HTTP server in a thread. Every wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

CASCADE = str(Path(sys.executable).parent / "cascade")
WAIT = 20.0  # generous bound for anything asynchronous


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- HTTP client ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def request(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    timeout: float = WAIT,
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def ce_headers(
    event_id: str,
    event_type: str = "com.example.test",
    source: str = "/test",
    **extra: str,
) -> dict[str, str]:
    """Binary-mode headers; ``extra`` keys become ``ce-<key>`` (``content_type`` → Content-Type)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": source,
        "ce-type": event_type,
    }
    for key, value in extra.items():
        if key == "content_type":
            headers["Content-Type"] = value
        else:
            headers[f"ce-{key}"] = value
    return headers


# --- recording subscriber ---------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lowercased names
    header_names: tuple[str, ...]
    body: bytes
    at: float  # time.monotonic()

    @property
    def ce(self) -> dict[str, str]:
        """The ce-* headers without their prefix, percent-decoded as a CloudEvents SDK does."""
        return {k[3:]: unquote(v) for k, v in self.headers.items() if k.startswith("ce-")}


AnswerFor = Answer | Callable[[Received], Answer]


class Subscriber:
    """Records every request; answers per path from a script, then with a default answer."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._received: list[Received] = []
        self._scripts: dict[str, list[AnswerFor]] = {}
        self._defaults: dict[str, AnswerFor] = {}
        self._in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        subscriber = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                received = Received(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    header_names=tuple(self.headers.keys()),
                    body=body,
                    at=time.monotonic(),
                )
                answer = subscriber._record(received)
                try:
                    if answer.delay:
                        time.sleep(answer.delay)
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the broker gave up waiting (timeout test)
                finally:
                    subscriber._done(received.path)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def program(self, path: str, *answers: AnswerFor, then: AnswerFor | None = None) -> None:
        """Answer the next requests to ``path`` with ``answers`` in turn, then with ``then``."""
        with self._lock:
            self._scripts[path] = list(answers)
            if then is not None:
                self._defaults[path] = then

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = WAIT) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self._received if r.path == path]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{path}: expected {count} request(s) within {timeout}s, got {len(got)}: "
                        f"{[r.ce.get('id') for r in got]}"
                    )
                self._lock.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _record(self, received: Received) -> Answer:
        with self._lock:
            self._received.append(received)
            self._in_flight[received.path] = self._in_flight.get(received.path, 0) + 1
            self.max_in_flight[received.path] = max(
                self.max_in_flight.get(received.path, 0), self._in_flight[received.path]
            )
            script = self._scripts.get(received.path)
            answer: AnswerFor = (
                script.pop(0) if script else self._defaults.get(received.path, Answer())
            )
            self._lock.notify_all()
        return answer(received) if callable(answer) else answer

    def _done(self, path: str) -> None:
        with self._lock:
            self._in_flight[path] -= 1


# --- manifests --------------------------------------------------------------------------------


def broker_manifest(
    name: str = "default", namespace: str = "conformance", delivery: dict[str, Any] | None = None
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"eventing.knative.dev/broker.class": "Kafka"},
        },
    }
    # A Broker without delivery gets retry 10 (config-br-defaults): far too slow for tests.
    manifest["spec"] = {"delivery": delivery or {"retry": 0}}
    return manifest


def trigger_manifest(
    name: str,
    uri: str,
    *,
    namespace: str = "conformance",
    broker: str = "default",
    filter_attributes: dict[str, str] | None = None,
    filters: list[dict[str, Any]] | None = None,
    delivery: dict[str, Any] | None = None,
    ordered: bool | None = None,
    subscriber_ref: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"broker": broker}
    if subscriber_ref is not None:
        spec["subscriber"] = {
            "ref": {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "name": subscriber_ref,
            }
        }
    else:
        spec["subscriber"] = {"uri": uri}
    if filter_attributes is not None:
        spec["filter"] = {"attributes": filter_attributes}
    if filters is not None:
        spec["filters"] = filters
    if delivery is not None:
        spec["delivery"] = delivery
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if ordered is not None:
        metadata["annotations"] = {
            "kafka.eventing.knative.dev/delivery.order": "ordered" if ordered else "unordered"
        }
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": metadata,
        "spec": spec,
    }


def service_manifest(
    name: str, url: str, *, namespace: str = "conformance", reply_types: Sequence[str] = ()
) -> dict[str, Any]:
    annotations = {"cascade.dev/url": url}
    if reply_types:
        annotations["cascade.dev/reply-types"] = ",".join(reply_types)
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"template": {"spec": {"containers": [{"image": f"example/{name}"}]}}},
    }


def write_manifests(path: Path, objects: Iterable[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(list(objects), sort_keys=False))
    return path


# --- the broker process -----------------------------------------------------------------------


class BrokerProcess:
    """``cascade broker`` as a child process; output goes to a file for diagnostics."""

    def __init__(
        self,
        manifests: Path,
        workdir: Path,
        *,
        log: str = "memory",
        args: Sequence[str] = (),
        port: int | None = None,
    ) -> None:
        self.manifests = manifests
        self.workdir = workdir
        self.log = log
        self.args = list(args)
        self.port = port or free_port()
        self.data_dir = workdir / "data"
        self.output_path = workdir / f"broker-{self.port}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> BrokerProcess:
        command = [
            CASCADE,
            "broker",
            "-f",
            str(self.manifests),
            "--port",
            str(self.port),
            "--log",
            self.log,
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        with self.output_path.open("wb") as output:
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "OTEL_TRACES_EXPORTER": "none"}
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=self.workdir
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = WAIT) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"broker exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                if request(self.port, "GET", "/-/health", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"broker not ready within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def stop(self, timeout: float = WAIT) -> int:
        """SIGTERM, then kill on timeout; the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return int(self.process.returncode)

    def kill(self) -> None:
        """``kill -9``: no chance to commit or flush anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(WAIT)

    # -- talking to it --

    def send(
        self,
        headers: Mapping[str, str],
        body: bytes = b"",
        path: str = "/conformance/default",
        method: str = "POST",
    ) -> Reply:
        return request(self.port, method, path, headers, body)

    def publish(self, event_id: str, event_type: str = "com.example.test", **extra: str) -> None:
        """Send a binary event and insist on 202."""
        body = extra.pop("body", "").encode()
        path = extra.pop("path", "/conformance/default")
        reply = self.send(ce_headers(event_id, event_type, **extra), body, path=path)
        assert reply.status == 202, (reply, self.output()[-2000:])

    def triggers(self) -> list[dict[str, Any]]:
        reply = request(self.port, "GET", "/-/triggers")
        assert reply.status == 200
        result: list[dict[str, Any]] = json.loads(reply.body)
        return result

    def metrics(self) -> str:
        reply = request(self.port, "GET", "/metrics")
        assert reply.status == 200
        return reply.body.decode()

    def wait_idle(self, timeout: float = WAIT) -> None:
        """Until every Trigger has committed everything in its Broker's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(trigger["lag"] == 0 for trigger in self.triggers()):
                return
            time.sleep(0.05)
        raise AssertionError(f"triggers still lagging after {timeout}s: {self.triggers()}")


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        sample_name, _, label_text = sample.partition("{")
        if sample_name != name:
            continue
        found = dict(
            part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part
        )
        found = {k: v.strip('"') for k, v in found.items()}
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def wait_for_event(
    subscriber: Subscriber, path: str, event_id: str, timeout: float = WAIT
) -> Received:
    """The first request to ``path`` carrying ``ce-id: event_id``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for received in subscriber.received(path):
            if received.ce.get("id") == event_id:
                return received
        time.sleep(0.02)
    raise AssertionError(f"{path}: event {event_id!r} not delivered within {timeout}s")

"""Test a function in-process: send typed events, get typed replies.

```python
from cascade.testing import FunctionClient

with FunctionClient(fn) as client:
    result = client.send(GreetingRequested(name="Ada"))
    assert result.status == 200
    assert result.reply(GreetingSent).message == "Hello, Ada!"
```

The client runs :func:`cascade.create_app` behind Flask's test client with a throw-away
SQLite folder, its own Prometheus registry and an in-memory span exporter (``spans()``). With
default settings, what the function publishes is kept, not sent (``published()``).

A whole chain of functions, wired by the same Knative manifests as the cluster, runs in process
with :class:`Chain`; :func:`discover` lists the functions of a folder.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import orjson
from flask.testing import FlaskClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from werkzeug.datastructures import Headers

from cascade.app import Runtime, create_app, runtime_of
from cascade.closing import ClosesOnExit
from cascade.codec import binary_headers, decode_header_value
from cascade.discovery import DiscoveredFunction, DiscoveryError, discover
from cascade.events import Event, bound_type
from cascade.events import registry as global_registry
from cascade.function import Function
from cascade.outbox import FlushResult
from cascade.publish import SinkTransport
from cascade.reply import now_rfc3339
from cascade.settings import Settings
from cascade.testing.messages import Message, RecordingTransport

if TYPE_CHECKING:
    from cascade.testing.chain import Chain, ChainError, Delivery

__all__ = [
    "Chain",
    "ChainError",
    "Delivery",
    "DiscoveredFunction",
    "DiscoveryError",
    "EventResult",
    "FunctionClient",
    "Message",
    "RecordingTransport",
    "discover",
]

# Where a FunctionClient's publisher "sends" when it records (never contacted).
RECORDING_SINK = "http://sink.cascade.test/"


def __getattr__(name: str) -> Any:
    # The chain pulls in the broker; load it only for the tests that use it.
    if name in ("Chain", "ChainError", "Delivery"):
        from cascade.testing import chain

        return getattr(chain, name)
    raise AttributeError(f"module 'cascade.testing' has no attribute {name!r}")


E = TypeVar("E", bound=Event)


class EventResult:
    """The answer to one delivery, with the reply decoded on demand."""

    def __init__(self, status: int, headers: Headers, body: bytes, function: Function) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self._function = function

    def __repr__(self) -> str:
        return f"EventResult(status={self.status}, type={self.attributes.get('type')!r})"

    @property
    def attributes(self) -> dict[str, str]:
        """The reply's CloudEvents attributes (binary mode headers, percent-decoded)."""
        found = {
            name[3:].lower(): decode_header_value(name, value)
            for name, value in self.headers.items()
            if name.lower().startswith("ce-")
        }
        content_type = self.headers.get("Content-Type")
        if found and content_type:
            found["datacontenttype"] = content_type
        return found

    @property
    def problem(self) -> dict[str, Any] | None:
        """The problem-details document of an error answer."""
        if self.headers.get("Content-Type", "").startswith("application/problem+json"):
            document: dict[str, Any] = orjson.loads(self.body)
            return document
        return None

    @overload
    def reply(self, model: type[E]) -> E: ...
    @overload
    def reply(self, model: None = None) -> Event | None: ...
    def reply(self, model: type[Event] | None = None) -> Event | None:
        """Decode the reply's data into ``model`` (default: the model of its type)."""
        event_type = self.attributes.get("type")
        if event_type is None:
            if model is not None:
                raise AssertionError(f"expected a {model.__name__} reply, got HTTP {self.status}")
            return None
        if model is None:
            model = self._function.registry.get(event_type) or global_registry.get(event_type)
            if model is None:
                raise LookupError(f"no model registered for reply type {event_type!r}")
        elif bound_type(model) != event_type:
            raise AssertionError(f"reply is {event_type!r}, not {bound_type(model)!r}")
        return model.model_validate_json(self.body)


class FunctionClient(ClosesOnExit):
    """An in-process client for one function.

    ``publish_transport`` carries what the function publishes: pass a
    :class:`RecordingTransport` (the default when no ``settings`` are given) to read it back
    with :meth:`published`; otherwise the settings' ``K_SINK`` gets real HTTP posts, and
    without one publishing fails as it does in production. ``background_relay=False`` sends
    what ``ctx.publish`` committed only when :meth:`flush_outbox` (or :meth:`published`) is
    called, never from the relay's thread.
    """

    def __init__(
        self,
        function: Function,
        settings: Settings | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        publish_transport: SinkTransport | None = None,
        background_relay: bool = True,
    ) -> None:
        self.function = function
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if settings is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cascade-test-")
            settings = Settings(data_dir=Path(self._tmp.name))
            if publish_transport is None:
                publish_transport = RecordingTransport()
        self.recorder: RecordingTransport | None = None
        if isinstance(publish_transport, RecordingTransport):
            self.recorder = publish_transport
            if settings.sink is None:
                settings = replace(settings, sink=RECORDING_SINK)
        self.settings = settings
        self.exporter = InMemorySpanExporter()
        if tracer_provider is None:
            tracer_provider = TracerProvider(shutdown_on_exit=False)
            tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer_provider = tracer_provider
        self.registry = CollectorRegistry()
        self.app = create_app(
            function,
            settings,
            registry=self.registry,
            tracer_provider=tracer_provider,
            publish_transport=publish_transport,
            background_relay=background_relay,
        )
        self.http: FlaskClient = self.app.test_client()

    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.app)

    # ------------------------------------------------------------------ sending

    def send(
        self,
        event: Event,
        *,
        event_id: str | None = None,
        source: str = "/cascade/testing",
        subject: str | None = None,
        partitionkey: str | None = None,
        extensions: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        structured: bool = False,
        specversion: str = "1.0",
    ) -> EventResult:
        """Deliver ``event`` (binary mode unless ``structured``); ``headers`` are extra HTTP
        headers such as ``traceparent``."""
        attributes = {
            "specversion": specversion,
            "id": event_id or str(uuid.uuid4()),
            "source": source,
            "type": bound_type(type(event)),
            "time": now_rfc3339(),
        }
        if subject is not None:
            attributes["subject"] = subject
        if partitionkey is not None:
            attributes["partitionkey"] = partitionkey
        attributes.update(extensions or {})
        data = event.to_json_bytes()
        if structured:
            document: dict[str, Any] = dict(attributes)
            document["datacontenttype"] = "application/json"
            document["data"] = orjson.loads(data)
            request_headers = {"Content-Type": "application/cloudevents+json"}
            body = orjson.dumps(document)
        else:
            request_headers = binary_headers({**attributes, "datacontenttype": "application/json"})
            body = data
        request_headers.update(headers or {})
        return self.post(request_headers, body)

    def post(self, headers: Mapping[str, str], body: bytes = b"", path: str = "/") -> EventResult:
        """POST raw headers and body (for malformed-input tests)."""
        response = self.http.post(path, headers=dict(headers), data=body)
        return self._result(response)

    def request(self, method: str, path: str, **kwargs: Any) -> EventResult:
        response = self.http.open(path, method=method, **kwargs)
        return self._result(response)

    def get(self, path: str) -> EventResult:
        return self.request("GET", path)

    def _result(self, response: Any) -> EventResult:
        try:
            return EventResult(
                response.status_code, Headers(response.headers), response.get_data(), self.function
            )
        finally:
            response.close()

    def flush_outbox(self) -> FlushResult:
        """Send, from this thread, what ``ctx.publish`` committed and is due now (the relay
        thread would send it moments later); returns the last pass's :class:`FlushResult`.
        Without ``K_SINK`` nothing is sent."""
        outbox = self.runtime.outbox
        result = outbox.flush()
        while result.published and result.pending and not result.failed:
            result = outbox.flush()
        return result

    # ------------------------------------------------------------------ inspection

    def published(self, model: type[Event] | str | None = None) -> list[Message]:
        """Events the function published (only of ``model``'s type when given), oldest first.

        Needs a RecordingTransport (the default when no settings were given)."""
        if self.recorder is None:
            raise LookupError(
                "this client does not record what it publishes: pass "
                "publish_transport=RecordingTransport() (or no settings)"
            )
        self.flush_outbox()  # what ctx.publish committed, sent now rather than moments later
        return self.recorder.messages(model)

    def spans(self) -> list[ReadableSpan]:
        """Spans finished so far (only with the client's own tracer provider)."""
        return list(self.exporter.get_finished_spans())

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """A sample's value from the function's registry (0.0 when absent)."""
        value = self.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if value is None else value

    def close(self) -> None:
        self.runtime.close()
        self.exporter.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

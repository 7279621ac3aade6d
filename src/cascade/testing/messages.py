"""What tests see of an event in flight: :class:`Message`, and :class:`RecordingTransport`, the
publisher transport that keeps every published event instead of sending it.

```python
with FunctionClient(fn) as client:          # its publisher records by default
    client.request("POST", "/orders", json=order)
    [created] = client.published(OrderCreated)
    assert created.partitionkey == created.event(OrderCreated).order_id
```
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar, overload

from cascade.attribute_view import AttributeView
from cascade.broker.event import StoredEvent
from cascade.broker.http.event import event_from_http
from cascade.codec import InvalidEvent
from cascade.events import Event, bound_type
from cascade.events import registry as global_registry
from cascade.publish import SinkAnswer

__all__ = ["Message", "RecordingTransport"]

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Message(AttributeView):
    """A CloudEvent as it travels: its attributes (wire form, extensions included) and data."""

    attributes: Mapping[str, str]
    data: bytes = b""
    # Where the broker stored it (in a Chain): partition and offset of its log record.
    partition: int | None = field(default=None, compare=False)
    offset: int | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"Message(type={self.type!r}, id={self.id!r}, partitionkey={self.partitionkey!r})"

    @property
    def partitionkey(self) -> str | None:
        return self.attributes.get("partitionkey")

    @overload
    def event(self, model: builtins.type[E]) -> E: ...
    @overload
    def event(self, model: None = None) -> Event: ...
    def event(self, model: builtins.type[Event] | None = None) -> Event:
        """The data decoded into ``model`` (default: the model registered for the type)."""
        if model is None:
            model = global_registry.get(self.type)
            if model is None:
                raise LookupError(f"no model registered for type {self.type!r}")
        elif bound_type(model) != self.type:
            raise AssertionError(f"message is {self.type!r}, not {bound_type(model)!r}")
        return model.model_validate_json(self.data)

    @classmethod
    def from_stored(
        cls, event: StoredEvent, partition: int | None = None, offset: int | None = None
    ) -> Message:
        return cls(dict(event.attributes), event.data, partition, offset)


def parse_message(headers: Mapping[str, str], body: bytes) -> Message:
    """A binary or structured CloudEvent parsed by the broker's own rules; InvalidEvent if not."""
    return Message.from_stored(event_from_http(headers, body))


class RecordingTransport:
    """A :class:`~cascade.publish.SinkTransport` that keeps what is published.

    Every POST is parsed as the broker ingress would: a valid CloudEvent is kept and answered
    202, anything else is answered 400 (so the publisher raises, as it would in production).
    Thread-safe.
    """

    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._lock = threading.Lock()

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> SinkAnswer:
        try:
            message = parse_message(headers, body)
        except InvalidEvent as exc:
            return SinkAnswer(400, {}, str(exc).encode())
        with self._lock:
            self._messages.append(message)
        return SinkAnswer(202, {}, b"")

    def messages(self, model: type[Event] | str | None = None) -> list[Message]:
        """What was published so far, oldest first; only of ``model``'s type when given."""
        with self._lock:
            found = list(self._messages)
        if model is None:
            return found
        wanted = model if isinstance(model, str) else bound_type(model)
        return [m for m in found if m.type == wanted]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def close(self) -> None:
        """Nothing to release; what was recorded stays readable."""

"""Event contracts: pydantic models bound to a CloudEvents ``type``, and the type registry.

```python
class OrderCreated(Event, type="com.example.shop.order.created"):
    order_id: str
    quantity: int
```

A subclass that passes ``type=`` is *bound*: it is the contract of that CloudEvent type, data
is validated into it on the way in and serialized from it on the way out. A subclass without
``type=`` is an unbound base that only shares fields.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

__all__ = ["Event", "EventRegistry", "registry"]

# CloudEvents only requires a non-empty string; we also refuse whitespace and control
# characters, which can never be routed on reliably (filters compare exact strings).
_TYPE_RE = re.compile(r"^[\x21-\x7e]+\Z")


class Event(BaseModel):
    """Base class of every event contract. Bind a subclass with ``type="reverse.dns.name"``."""

    ce_type: ClassVar[str | None] = None

    def __init_subclass__(cls, type: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if type is not None and (not isinstance(type, str) or not _TYPE_RE.match(type)):
            raise TypeError(
                f"{cls.__qualname__}: CloudEvents type must be a non-empty string of printable "
                f"ASCII without spaces, got {type!r}"
            )
        # Set on every subclass so a subclass never silently inherits its parent's type.
        cls.ce_type = type

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # Runs once pydantic has finished building the class (schema, serializer).
        super().__pydantic_init_subclass__(**kwargs)
        if cls.ce_type is not None:
            registry.register(cls)

    def to_json_bytes(self) -> bytes:
        """The event data as compact JSON (what goes in the HTTP body)."""
        return self.__pydantic_serializer__.to_json(self)


def bound_type(model: type[Event]) -> str:
    """The CloudEvents type of ``model``; TypeError when the model is not bound to one."""
    if not (isinstance(model, type) and issubclass(model, Event)):
        raise TypeError(f"{model!r} is not a cascade.Event subclass")
    if model.ce_type is None:
        raise TypeError(
            f"{model.__qualname__} is not bound to a CloudEvents type: declare it as "
            f'`class {model.__name__}(Event, type="com.example....")`'
        )
    return model.ce_type


class EventRegistry:
    """Maps CloudEvents types to their models, and exports JSON Schema for each."""

    def __init__(self) -> None:
        self._models: dict[str, type[Event]] = {}
        self._lock = threading.Lock()

    def register(self, model: type[Event]) -> None:
        event_type = bound_type(model)
        with self._lock:
            known = self._models.get(event_type)
            if known is not None and known is not model and _origin(known) != _origin(model):
                raise TypeError(
                    f"CloudEvents type {event_type!r} is already bound to "
                    f"{_origin(known)}; {_origin(model)} cannot bind it too"
                )
            # Same file and name: a re-import (tests, reloads); the newest class wins.
            self._models[event_type] = model

    def get(self, event_type: str) -> type[Event] | None:
        return self._models.get(event_type)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._models

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._models))

    def __len__(self) -> int:
        return len(self._models)

    def json_schema(self, event_type: str) -> dict[str, Any]:
        """JSON Schema of the event's data, tagged with its CloudEvents type."""
        model = self._models.get(event_type)
        if model is None:
            raise KeyError(f"unknown CloudEvents type {event_type!r}")
        schema = model.model_json_schema()
        schema["x-cloudevents-type"] = event_type
        return schema

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """Every registered type's schema, keyed by type, sorted."""
        return {event_type: self.json_schema(event_type) for event_type in self}


def _origin(model: type[Event]) -> str:
    # The defining file, not the module name: one file imported under two names (a test
    # importing functions/x/func.py as a package module, `cascade serve` loading it by
    # path) defines the same contract twice, which is not a conflict.
    module = sys.modules.get(model.__module__)
    file = getattr(module, "__file__", None)
    where = str(Path(file).resolve()) if file else model.__module__
    return f"{where}:{model.__qualname__}"


registry = EventRegistry()
"""Every bound Event subclass defined in this process."""

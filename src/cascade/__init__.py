"""Cascade: event-driven microservices as CloudEvents HTTP functions.

```python
from cascade import Context, Event, Function

class GreetingRequested(Event, type="com.example.greeting.requested"):
    name: str

fn = Function("greeter")

@fn.on(GreetingRequested)
def greet(event: GreetingRequested, ctx: Context) -> None: ...
```

Names are imported on first use, so ``import cascade`` (the CLI, the broker) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cascade._version import __version__

if TYPE_CHECKING:
    from cascade.app import create_app
    from cascade.cloudevent import CloudEvent
    from cascade.context import Context, HttpContext
    from cascade.events import Event, EventRegistry, bound_type, registry
    from cascade.function import Function
    from cascade.lifecycle import LifecycleContext
    from cascade.outbox import FlushResult, Outbox
    from cascade.outcomes import DeadLetter, Drop, Retry
    from cascade.publish import Publisher, PublishError
    from cascade.reply import Reply
    from cascade.settings import Settings, SettingsError

_HOMES = {
    "create_app": "cascade.app",
    "CloudEvent": "cascade.cloudevent",
    "Context": "cascade.context",
    "HttpContext": "cascade.context",
    "Event": "cascade.events",
    "EventRegistry": "cascade.events",
    "registry": "cascade.events",
    "bound_type": "cascade.events",
    "Function": "cascade.function",
    "LifecycleContext": "cascade.lifecycle",
    "FlushResult": "cascade.outbox",
    "Outbox": "cascade.outbox",
    "DeadLetter": "cascade.outcomes",
    "Drop": "cascade.outcomes",
    "Retry": "cascade.outcomes",
    "PublishError": "cascade.publish",
    "Publisher": "cascade.publish",
    "Reply": "cascade.reply",
    "Settings": "cascade.settings",
    "SettingsError": "cascade.settings",
}

__all__ = [
    "CloudEvent",
    "Context",
    "DeadLetter",
    "Drop",
    "Event",
    "EventRegistry",
    "FlushResult",
    "Function",
    "HttpContext",
    "LifecycleContext",
    "Outbox",
    "PublishError",
    "Publisher",
    "Reply",
    "Retry",
    "Settings",
    "SettingsError",
    "__version__",
    "bound_type",
    "create_app",
    "registry",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cascade' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

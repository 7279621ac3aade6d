"""Function: handlers registered by CloudEvents type, sample events, optional HTTP routes."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import MetaData

from cascade.events import Event, EventRegistry, bound_type
from cascade.telemetry.function_metrics import FunctionMetrics

__all__ = ["Function", "Handler", "Route"]

F = TypeVar("F", bound=Callable[..., Any])

# The Knative Service / image / folder name: a DNS-1123 label.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


@dataclass(frozen=True)
class Handler:
    """One registered handler."""

    event_type: str
    model: type[Event]
    func: Callable[..., Any]
    reply_types: tuple[type[Event], ...]
    takes_context: bool

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))


@dataclass(frozen=True)
class Route:
    """A plain HTTP endpoint served next to the CloudEvents one (e.g. an order API)."""

    rule: str
    func: Callable[..., Any]
    methods: tuple[str, ...]
    endpoint: str
    admin: bool = False


class Function:
    """A CloudEvents function: ``fn = Function("inventory")`` then ``@fn.on(Model)``.

    ``metadata`` holds the function's own SQLAlchemy tables (created at start); ``source`` is
    the CloudEvents source of its replies (default ``/<name>``, or ``CASCADE_SOURCE``);
    ``examples`` are sample events the contract suite sends; ``idempotent=False`` turns off
    dedupe for this function (its handler then runs once per delivery).
    """

    def __init__(
        self,
        name: str,
        *,
        metadata: MetaData | None = None,
        source: str | None = None,
        examples: Iterable[Event] = (),
        idempotent: bool = True,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"function name {name!r} must be a DNS-1123 label (lowercase letters, digits "
                "and '-', at most 63 characters): it is also the Knative Service name"
            )
        if metadata is not None and not isinstance(metadata, MetaData):
            raise TypeError("metadata must be a sqlalchemy.MetaData (e.g. Base.metadata)")
        if source is not None and not source:
            raise ValueError("source must not be empty (leave it None for '/<name>')")
        self.name = name
        self.metadata = metadata
        self.source = source
        self.idempotent = idempotent
        self._handlers: dict[str, Handler] = {}
        self._routes: list[Route] = []
        self.examples: list[Event] = []
        # The function's own counters and gauges (cascade/telemetry/function_metrics.py).
        self.metrics = FunctionMetrics(name)
        for example in examples:
            self.example(example)

    def __repr__(self) -> str:
        return f"Function({self.name!r}, handlers={sorted(self._handlers)})"

    # ------------------------------------------------------------------ registration

    def on(self, model: type[Event]) -> Callable[[F], F]:
        """Register the decorated callable as the handler of ``model``'s CloudEvents type.

        The handler is called as ``handler(event, ctx)`` (or ``handler(event)`` when it takes
        one parameter) and returns an Event, a ``Reply`` or None.
        """
        event_type = bound_type(model)

        def register(func: F) -> F:
            if event_type in self._handlers:
                raise ValueError(
                    f"{self.name}: {event_type!r} already has a handler "
                    f"({self._handlers[event_type].name}); one handler per type"
                )
            self._handlers[event_type] = Handler(
                event_type=event_type,
                model=model,
                func=func,
                reply_types=_reply_types(func),
                takes_context=_takes_context(func, event_type),
            )
            return func

        return register

    def example(self, event: Event) -> Event:
        """Declare a sample event (sent by the contract suite); returns it."""
        event_type = bound_type(type(event))
        if event_type not in self._handlers:
            raise ValueError(
                f"{self.name}: example of type {event_type!r} has no handler; register the "
                "handler before its examples"
            )
        self.examples.append(event)
        return event

    def route(
        self, rule: str, *, methods: Iterable[str] = ("GET",), admin: bool = False
    ) -> Callable[[F], F]:
        """Serve a plain HTTP endpoint: ``view(ctx: HttpContext) -> Flask response value``.

        ``ctx.store`` is a Session in a transaction committed when the view returns and
        rolled back when it raises. ``/``, ``/metrics`` and ``/health/*`` are reserved.
        ``admin=True`` marks a route that changes operator state or shows private data: it
        answers 404, like an unknown path, unless ``CASCADE_ADMIN_ROUTES=true``.
        """
        if rule == "/" or rule == "/metrics" or rule.startswith("/health/"):
            raise ValueError(f"route {rule!r} is reserved by the runtime")
        if not rule.startswith("/"):
            raise ValueError(f"route {rule!r} must start with '/'")
        verbs = tuple(sorted({m.upper() for m in methods}))

        def register(func: F) -> F:
            endpoint = f"route_{len(self._routes)}_{getattr(func, '__name__', 'view')}"
            self._routes.append(Route(rule, func, verbs, endpoint, admin))
            return func

        return register

    # ------------------------------------------------------------------ introspection

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return types.MappingProxyType(self._handlers)

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    @property
    def registry(self) -> EventRegistry:
        """The types this function consumes and the reply types its handlers declare."""
        registry = EventRegistry()
        for handler in self._handlers.values():
            registry.register(handler.model)
            for reply in handler.reply_types:
                registry.register(reply)
        return registry

    def consumes(self) -> list[str]:
        return sorted(self._handlers)

    def produces(self) -> list[str]:
        return sorted({bound_type(r) for h in self._handlers.values() for r in h.reply_types})


def _takes_context(func: Callable[..., Any], event_type: str) -> bool:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return True
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    if varargs or len(positional) >= 2:
        return True
    if len(positional) == 1:
        return False
    raise TypeError(
        f"handler {getattr(func, '__qualname__', func)!r} for {event_type!r} must accept "
        "(event, ctx) or (event)"
    )


def _reply_types(func: Callable[..., Any]) -> tuple[type[Event], ...]:
    """Event classes named in the handler's return annotation (for the catalog and tests)."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolved forward references: the annotation is documentation only
        return ()
    found: list[type[Event]] = []

    def walk(annotation: object) -> None:
        if isinstance(annotation, type) and issubclass(annotation, Event):
            if annotation.ce_type is not None and annotation not in found:
                found.append(annotation)
            return
        for arg in typing.get_args(annotation):
            walk(arg)

    walk(hints.get("return"))
    return tuple(found)

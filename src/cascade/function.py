"""Function: handlers registered by CloudEvents type, sample events, optional HTTP routes."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from sqlalchemy import MetaData

from cascade.events import Event, EventRegistry, bound_type
from cascade.telemetry.function_metrics import FunctionMetrics

__all__ = ["CatchAll", "Function", "Handler", "Hook", "Route"]

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
class CatchAll:
    """A handler for any event at one path: called with a :class:`~cascade.CloudEvent`."""

    path: str
    func: Callable[..., Any]
    reply_types: tuple[type[Event], ...]
    takes_context: bool
    idempotent: bool | None  # None: as the function

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


@dataclass(frozen=True)
class Hook:
    """A lifecycle or health callable: called as ``func(ctx)`` or ``func()``."""

    func: Callable[..., Any]
    takes_context: bool

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))

    def __call__(self, ctx: object) -> Any:
        return self.func(ctx) if self.takes_context else self.func()


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
        self._catch_alls: dict[str, CatchAll] = {}
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._readiness: list[Hook] = []
        self._liveness: list[Hook] = []
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

    @overload
    def on_any(self, func: F, /) -> F: ...
    @overload
    def on_any(self, /, *, path: str = "/", idempotent: bool | None = None) -> Callable[[F], F]: ...
    def on_any(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        path: str = "/",
        idempotent: bool | None = None,
    ) -> Any:
        """Register a catch-all handler: ``handler(event: CloudEvent, ctx)`` gets any event
        as it came (attributes and data bytes, no model), for sinks such as a dead-letter
        store or an archive.

        ``@fn.on_any`` serves ``POST /`` for every type without a typed handler.
        ``@fn.on_any(path="/dead-letters")`` serves a CloudEvents endpoint of its own at that
        path, where every event goes to it whatever its type (a Trigger's ``deadLetterSink``
        ``uri``, say). Outcomes, tracing, metrics (type label ``other``) and the store
        transaction are those of typed handlers; ``idempotent=False`` runs it for every
        delivery (default: dedupe on (source, id) like the function).
        """

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            if not path.startswith("/"):
                raise ValueError(f"on_any path {path!r} must start with '/'")
            if path == "/metrics" or path.startswith("/health/"):
                raise ValueError(f"on_any path {path!r} is reserved by the runtime")
            if path in self._catch_alls:
                raise ValueError(
                    f"{self.name}: {path!r} already has a catch-all handler "
                    f"({self._catch_alls[path].name})"
                )
            self._catch_alls[path] = CatchAll(
                path=path,
                func=handler,
                reply_types=_reply_types(handler),
                takes_context=_takes_context(handler, "any event"),
                idempotent=idempotent,
            )
            return handler

        if func is not None:
            return register(func)
        return register

    @property
    def catch_alls(self) -> Mapping[str, CatchAll]:
        """Catch-all handlers by path (``/`` for events without a typed handler)."""
        return types.MappingProxyType(self._catch_alls)

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

    # ------------------------------------------------------------------ lifecycle

    def on_start(self, func: F) -> F:
        """Run ``func(ctx: LifecycleContext)`` (or ``func()``) when the app starts: in every
        gunicorn worker after the fork, and in ``create_app`` / ``FunctionClient``.

        Start hooks run in declaration order before the first request; one that raises stops
        the start (the worker does not boot; ``create_app`` raises).
        """
        self._on_start.append(_hook(func, "on_start"))
        return func

    def on_stop(self, func: F) -> F:
        """Run ``func(ctx)`` (or ``func()``) when the app stops: after a drain (SIGTERM, the
        in-flight requests finished), at worker exit, or ``FunctionClient.close()``.

        Stop hooks run once, in reverse declaration order; one that raises is logged and the
        others still run.
        """
        self._on_stop.append(_hook(func, "on_stop"))
        return func

    def readiness(self, func: F) -> F:
        """A readiness check for ``GET /health/readiness``: ``func(ctx)`` (or ``func()``)
        returns True, False, or ``(ok, detail)``; False or an exception answers 503."""
        self._readiness.append(_hook(func, "readiness"))
        return func

    def liveness(self, func: F) -> F:
        """A liveness check for ``GET /health/liveness``, shaped like :meth:`readiness`; a
        failing one makes the platform restart the container."""
        self._liveness.append(_hook(func, "liveness"))
        return func

    @property
    def start_hooks(self) -> tuple[Hook, ...]:
        return tuple(self._on_start)

    @property
    def stop_hooks(self) -> tuple[Hook, ...]:
        return tuple(self._on_stop)

    @property
    def readiness_checks(self) -> tuple[Hook, ...]:
        return tuple(self._readiness)

    @property
    def liveness_checks(self) -> tuple[Hook, ...]:
        return tuple(self._liveness)

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


def _hook(func: Callable[..., Any], kind: str) -> Hook:
    if not callable(func):
        raise TypeError(f"@fn.{kind} needs a callable, got {type(func).__name__}")
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return Hook(func, True)
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(positional) > 1:
        raise TypeError(
            f"@fn.{kind} {getattr(func, '__qualname__', func)!r} must accept (ctx) or nothing"
        )
    varargs = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    return Hook(func, bool(positional) or varargs)


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

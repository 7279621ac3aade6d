"""``create_app(function)``: the Flask app that serves a function over HTTP.

Routes: ``POST /`` (CloudEvents), ``GET /health/liveness``, ``GET /health/readiness``,
``GET /metrics``, plus the function's own ``@fn.route`` endpoints. Every error answer is an
``application/problem+json`` document; none ever carries a traceback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import orjson
from flask import Flask, Response, current_app, request
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from cascade._version import __version__
from cascade.codec import InvalidEvent, parse_wsgi
from cascade.context import HttpContext
from cascade.dispatch import Answer, Dispatcher
from cascade.function import Function, Route
from cascade.http import BodyError, problem, read_limited
from cascade.idempotency import Deduper
from cascade.lifecycle import Lifecycle, LifecycleContext
from cascade.outbox import Outbox, OutboxCollector, Relay
from cascade.publish import Publisher, SinkTransport
from cascade.settings import Settings
from cascade.store import Store, store_refusal
from cascade.telemetry.function_metrics import commit_counts, metrics_scope
from cascade.telemetry.metrics import Metrics
from cascade.telemetry.tracing import setup_tracing

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from cascade.identity import SenderVerifier

__all__ = ["EventEndpoint", "Runtime", "create_app", "runtime_of"]

_EXTENSION: Final = "cascade"
_log = logging.getLogger("cascade.app")


class _Response(Response):
    # No invented Content-Type on 204s and binary replies: the answer sets its own.
    default_mimetype = None


class _EnvironGetter(Getter[Mapping[str, Any]]):
    """Reads W3C trace headers straight from the WSGI environ."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_GETTER: Final = _EnvironGetter()
# HTTP says these change nothing: a route answering one gets a reading store session.
_READING_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


class Runtime:
    """Everything one app needs per process: store, metrics, tracer, dispatcher, lifecycle."""

    def __init__(
        self,
        function: Function,
        settings: Settings,
        *,
        registry: CollectorRegistry,
        tracer_provider: trace.TracerProvider | None,
        publish_transport: SinkTransport | None = None,
        background_relay: bool = True,
    ) -> None:
        self.function = function
        self._background_relay = background_relay
        self.settings = settings
        self.source = function.source or settings.source_for(function.name)
        self.metrics = Metrics(function.name, registry)
        self.function_metrics = function.metrics.bind(registry)
        self.tracer = trace.get_tracer("cascade", __version__, tracer_provider)
        self._tracer_provider = tracer_provider
        self.store = Store(settings.database_url_for(function.name), function.metadata)
        idempotent = settings.idempotency and function.idempotent
        self.store.create_all()  # the outbox table too: any handler or route may publish
        deduper = (
            Deduper(function.name, self.store.dialect, settings.dedupe_ttl_seconds)
            if idempotent
            else None
        )
        gauges = function.metrics.gauge_collector(self.store.session)
        if gauges is not None:
            self.metrics.add_live(gauges)
        self._publisher: Publisher | None = None
        self._publish_transport = publish_transport
        self._publisher_lock = threading.Lock()
        self.outbox = Outbox(function.name, self.store, self.publisher())
        self.metrics.add_live(OutboxCollector(self.outbox))
        self.relay = (
            Relay(
                self.outbox,
                # One attempt per send: the relay backs off per row without blocking others.
                Publisher.from_settings(
                    settings.with_overrides(publish_retries=0),
                    self.source,
                    tracer_provider=tracer_provider,
                    transport=publish_transport,
                ),
                backoff_seconds=settings.publish_backoff_seconds,
                backoff_max_seconds=settings.publish_backoff_max_seconds,
                poll_seconds=settings.outbox_poll_seconds,
            )
            if settings.sink is not None
            else None
        )
        self.dispatcher = Dispatcher(
            function,
            source=self.source,
            metrics=self.metrics,
            store=self.store,
            deduper=deduper,
            publisher=self.publisher,
            tracer=self.tracer,
            function_metrics=self.function_metrics,
            outbox=self.outbox,
        )
        self._draining = threading.Event()
        self.sender_verifier = _sender_verifier(settings)
        self.lifecycle = Lifecycle(function, LifecycleContext(function.name, settings, self.store))

    def start(self) -> None:
        """Run the start hooks (in each worker after fork); closes everything if one fails."""
        try:
            relay = self.relay if self._background_relay else None
            self.lifecycle.start(also=relay.start if relay is not None else None)
        except BaseException:
            self.close()
            raise

    def publisher(self) -> Publisher:
        """The process's publisher to K_SINK, created on first use (after fork)."""
        if self._publisher is None:
            with self._publisher_lock:
                if self._publisher is None:
                    self._publisher = Publisher.from_settings(
                        self.settings,
                        self.source,
                        tracer_provider=self._tracer_provider,
                        transport=self._publish_transport,
                    )
        return self._publisher

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def start_draining(self) -> None:
        """From now on readiness answers 503 and new events get 503 (never a 4xx)."""
        if not self._draining.is_set():
            self._draining.set()
            _log.info("draining: refusing new events, finishing in-flight ones")

    def close(self) -> None:
        """Run the stop hooks, then release the publisher and the store (once)."""
        self.lifecycle.stop(also=self._release)

    def _release(self) -> None:
        if self.relay is not None:
            self.relay.stop()
            self.relay.publisher.close()
        if self._publisher is not None:
            self._publisher.close()
        self.store.dispose()


def _sender_verifier(settings: Settings) -> SenderVerifier | None:
    if settings.oidc_audience is None:
        return None
    from cascade.identity import SenderVerifier  # only then: PyJWT costs ~30 ms to import

    return SenderVerifier(
        audience=settings.oidc_audience,
        issuer=settings.oidc_issuer,
        jwks_url=settings.oidc_jwks_url,
        allowed_subjects=settings.oidc_allowed_subjects,
        leeway_seconds=settings.oidc_leeway_seconds,
    )


def runtime_of(app: Flask) -> Runtime:
    """The :class:`Runtime` behind an app made by :func:`create_app`."""
    runtime = app.extensions.get(_EXTENSION)
    if not isinstance(runtime, Runtime):
        raise LookupError("this Flask app was not made by cascade.create_app")
    return runtime


def create_app(
    function: Function,
    settings: Settings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    publish_transport: SinkTransport | None = None,
    background_relay: bool = True,
) -> Flask:
    """Build the Flask app for ``function``.

    ``settings`` default to :meth:`Settings.from_env`; ``registry`` to a fresh Prometheus
    registry; ``tracer_provider`` to the process's global one (installed by
    :func:`~cascade.telemetry.tracing.setup_tracing` when none is given);
    ``publish_transport`` (tests) to HTTP posts to ``K_SINK``. ``background_relay=False``
    (tests) sends what ``ctx.publish`` committed only on ``ctx.outbox.flush()``.
    """
    if not isinstance(function, Function):
        raise TypeError(f"create_app needs a cascade.Function, got {type(function).__name__}")
    settings = settings or Settings.from_env()
    if tracer_provider is None:
        setup_tracing(function.name)
    runtime = Runtime(
        function,
        settings,
        registry=registry if registry is not None else CollectorRegistry(),
        tracer_provider=tracer_provider,
        publish_transport=publish_transport,
        background_relay=background_relay,
    )
    app = Flask(f"cascade.{function.name}")
    app.response_class = _Response
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions[_EXTENSION] = runtime
    _add_event_route(app, runtime)
    _add_ops_routes(app, runtime)
    for route in function.routes:
        _add_user_route(app, runtime, route)
    _add_error_handlers(app, runtime)
    runtime.start()
    return app


def _problem(status: int, detail: str, **members: Any) -> Response:
    body, headers = problem(status, detail, **members)
    return _Response(body, status=status, headers=headers)


def _add_event_route(app: Flask, runtime: Runtime) -> None:
    endpoint = EventEndpoint(runtime)

    def receive() -> Response:
        # Reached only when the WSGI fast path is bypassed (e.g. app.wsgi_app replaced).
        answer = endpoint.answer(request.environ)
        return _Response(answer.body, status=answer.status, headers=answer.headers)

    # Registered so routing knows "/" takes POST (405 with Allow: POST for other methods).
    for index, path in enumerate(sorted(endpoint.paths)):
        app.add_url_rule(path, f"cascade_event_{index}", receive, methods=["POST"])
    app.wsgi_app = endpoint.wrap(app.wsgi_app)  # type: ignore[method-assign,assignment]


_STATUS_LINES: Final = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class EventEndpoint:
    """``POST /`` (and the paths of ``@fn.on_any(path=...)``) as a plain WSGI handler in front
    of Flask.

    Every event takes this path, so it skips Flask's request context, routing and response
    objects (whose header sanitising alone cost more than parsing the event); every other
    request goes on to Flask untouched.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.max_body = runtime.settings.max_body_bytes
        self.dispatcher = runtime.dispatcher
        self.metrics = runtime.metrics
        self.verifier = runtime.sender_verifier
        self.paths = frozenset({"/", *runtime.function.catch_alls})

    def wrap(self, flask_wsgi: WSGIApplication) -> WSGIApplication:
        paths = self.paths

        def cascade_wsgi(
            environ: WSGIEnvironment, start_response: StartResponse
        ) -> Iterable[bytes]:
            if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in paths:
                return flask_wsgi(environ, start_response)
            try:
                answer = self.answer(environ)
            except Exception:
                _log.exception("unhandled error on POST /")
                body, headers = problem(500, "internal error; the function's logs have the details")
                answer = Answer(500, headers, body, "error")
            header_list = list(answer.headers.items())
            if answer.status != 204:
                header_list.append(("Content-Length", str(len(answer.body))))
            start_response(_STATUS_LINES[answer.status], header_list)
            return [answer.body] if answer.body else []

        return cascade_wsgi

    def answer(self, environ: WSGIEnvironment) -> Answer:
        if self.runtime.draining:
            self.metrics.unavailable()
            body, headers = problem(503, "shutting down; deliver this event again")
            headers["Retry-After"] = "1"
            return Answer(503, headers, body, "unavailable")
        if self.verifier is not None:
            refusal = self.verifier.check(environ.get("HTTP_AUTHORIZATION"))
            if refusal is not None:
                self.metrics.refuse_sender(refusal.reason)
                body, headers = problem(refusal.status, refusal.detail, reason=refusal.reason)
                if refusal.status == 503:
                    headers["Retry-After"] = "5"
                else:
                    headers["WWW-Authenticate"] = refusal.www_authenticate()
                return Answer(refusal.status, headers, body, "refused")
        try:
            message = parse_wsgi(environ, read_limited(environ, self.max_body))
        except BodyError as exc:
            self.metrics.reject(exc.status)
            body, headers = problem(exc.status, exc.detail)
            return Answer(exc.status, headers, body, "rejected")
        except InvalidEvent as exc:
            self.metrics.reject(exc.status)
            body, headers = problem(exc.status, exc.detail, attribute=exc.attribute)
            return Answer(exc.status, headers, body, "rejected")
        parent = None
        if "HTTP_TRACEPARENT" in environ or "HTTP_BAGGAGE" in environ:
            parent = propagate.extract(environ, getter=_GETTER)
        return self.dispatcher.dispatch(message, parent, environ.get("PATH_INFO", "/"))


def _health(status: int, document: dict[str, Any]) -> Response:
    return _Response(orjson.dumps(document), status, {"Content-Type": "application/json"})


def _add_ops_routes(app: Flask, runtime: Runtime) -> None:
    def liveness() -> Response:
        alive, detail = runtime.lifecycle.alive()
        if not alive:
            return _health(503, {"status": "not alive", "detail": detail})
        return _Response(b'{"status":"alive"}', 200, {"Content-Type": "application/json"})

    def readiness() -> Response:
        if runtime.draining:
            return _Response(b'{"status":"draining"}', 503, {"Content-Type": "application/json"})
        ready, detail = runtime.lifecycle.ready()
        if not ready:
            return _health(503, {"status": "not ready", "detail": detail})
        return _Response(b'{"status":"ready"}', 200, {"Content-Type": "application/json"})

    def metrics() -> Response:
        body, content_type = runtime.metrics.exposition(request.headers.get("Accept"))
        return _Response(body, 200, {"Content-Type": content_type})

    app.add_url_rule("/health/liveness", "cascade_liveness", liveness, methods=["GET"])
    app.add_url_rule("/health/readiness", "cascade_readiness", readiness, methods=["GET"])
    app.add_url_rule("/metrics", "cascade_metrics", metrics, methods=["GET"])


def _not_found(**_path_values: Any) -> Response:
    return _problem(404, f"no route for {request.path}; CloudEvents go to POST /")


def _add_user_route(app: Flask, runtime: Runtime, route: Route) -> None:
    if route.admin and not runtime.settings.admin_routes:
        # Answered like an unknown path (not 403): a disabled operator route is not there.
        app.add_url_rule(route.rule, route.endpoint, _not_found, methods=list(route.methods))
        return
    logger = logging.getLogger(f"cascade.fn.{runtime.function.name}")
    store = runtime.store

    def view(**kwargs: Any) -> Any:
        parent = propagate.extract(request.environ, getter=_GETTER)
        with runtime.tracer.start_as_current_span(
            f"{request.method} {route.rule}",
            context=parent if parent is not None else otel_context.Context(),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method, "http.route": route.rule},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            ctx = HttpContext(
                request,
                function=runtime.function.name,
                logger=logger,
                open_session=store.read_session
                if request.method in _READING_METHODS
                else store.session,
                publisher=runtime.publisher,
                outbox=runtime.outbox,
            )
            try:
                with metrics_scope(runtime.function_metrics):
                    result = route.func(ctx, **kwargs)
                    session = ctx.store_opened
                    if session is not None:
                        session.commit()
                    commit_counts()
                response = current_app.make_response(result)
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                return response
            except HTTPException as exc:
                if exc.code is not None:
                    span.set_attribute("http.response.status_code", exc.code)
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                session = ctx.store_opened
                if session is not None:
                    session.close()  # rolls back anything not committed

    app.add_url_rule(route.rule, route.endpoint, view, methods=list(route.methods))


def _add_error_handlers(app: Flask, runtime: Runtime) -> None:
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 404:
            return _not_found()
        if status == 405 and isinstance(exc, MethodNotAllowed):
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            detail = f"{request.method} is not allowed on {request.path}; use {allowed}"
        elif status == 413:
            detail = f"body exceeds the {runtime.settings.max_body_bytes}-byte limit"
        else:
            detail = exc.description or exc.name
        response = _problem(status, detail)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    def unexpected(exc: Exception) -> Response:
        refusal = store_refusal(exc)
        if refusal is not None:
            return _problem(422, refusal)
        _log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return _problem(500, "internal error; the function's logs have the details")

    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected)

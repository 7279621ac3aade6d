"""The Broker ingress, checks in the Kafka receiver's order (§1.2-§1.5).

The caller (server.py) has already answered probes and non-POST methods (405). Here:
unknown path → 404 before the body is read; not a CloudEvent, a batch, missing or malformed
``id``/``source``/``type``/``time``/``specversion`` → 400; a body that does not arrive within
``body_timeout`` seconds (``--read-timeout``) → 408 and the connection is closed; an event over
the size limit or a failed store → 503; stored durably → 202. Every answer has an empty body.
The event is stored as received: binary bodies untouched, structured JSON turned into the
binary form, nothing added.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from opentelemetry.trace import Span

from cascade.broker.event import StoredEvent
from cascade.broker.http.event import event_size
from cascade.broker.ingress.appender import Appender
from cascade.broker.log.base import LogError
from cascade.broker.oidc import BrokerIdentity
from cascade.broker.telemetry.metrics import BrokerMetrics
from cascade.broker.telemetry.tracing import BrokerTracing, headers_for, incoming_context
from cascade.codec import InvalidEvent, binary_attributes, is_structured, structured_attributes
from cascade.identity import Refusal

__all__ = [
    "REASON_HEADER",
    "STORE_FAILED",
    "BrokerEndpoint",
    "Ingress",
    "PendingStore",
    "broker_path",
]

REASON_HEADER = "Cascade-Error"
STORE_FAILED = "storing the event failed"

logger = logging.getLogger(__name__)


def broker_path(namespace: str, name: str) -> str:
    return f"/{namespace}/{name}"


@dataclass(frozen=True)
class BrokerEndpoint:
    namespace: str
    name: str
    appender: Appender


@dataclass(frozen=True)
class PendingStore:
    """An accepted event on its way into the log (:meth:`Ingress.begin_store`)."""

    endpoint: BrokerEndpoint
    event: StoredEvent
    future: asyncio.Future[tuple[int, int]]
    span: Span | None

    @property
    def path(self) -> str:
        return broker_path(self.endpoint.namespace, self.endpoint.name)


class Ingress:
    def __init__(
        self,
        endpoints: Mapping[str, BrokerEndpoint],
        metrics: BrokerMetrics,
        tracing: BrokerTracing,
        *,
        max_event_bytes: int,
        draining: Callable[[], bool],
        identity: BrokerIdentity | None = None,
        body_timeout: float = 10.0,
    ) -> None:
        self._body_timeout = body_timeout
        self._endpoints = dict(endpoints)
        self._metrics = metrics
        self._tracing = tracing
        self._max_event_bytes = max_event_bytes
        self._draining = draining
        self._identity = identity

    async def handle(self, request: web.BaseRequest) -> web.Response:
        """A POST to ``/<namespace>/<broker>`` (one trailing slash allowed)."""
        path = request.path
        if path.endswith("/"):
            path = path[:-1]
        endpoint = self._endpoints.get(path)
        if endpoint is None:
            return self._reject(404, "no broker at this path", request.path)
        if self._draining():
            return self._reject(503, "the broker is shutting down", request.path)
        headers = request.headers
        subject = ""
        if self._identity is not None:
            # Before the body is read: an unauthenticated sender costs no body read.
            known = self._identity.authenticate(
                endpoint.namespace, endpoint.name, headers.get("Authorization")
            )
            if isinstance(known, Refusal):
                return self._refuse(known, request.path)
            subject = known
        attributes: dict[str, str] | None = None
        try:
            if not is_structured(headers.get("Content-Type")):
                attributes = binary_attributes(headers.items())
        except InvalidEvent as exc:  # 400 whatever the codec suggests, as Knative's receiver
            return self._reject(400, str(exc), request.path)
        await _continue_if_expected(request)
        try:
            async with asyncio.timeout(self._body_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject(503, "event larger than --max-event-bytes", request.path)
        except TimeoutError:
            slow = self._reject(408, "the body did not arrive within --read-timeout", request.path)
            slow.force_close()
            return slow
        try:
            if attributes is None:
                event = StoredEvent(*structured_attributes(body))
            else:
                event = StoredEvent(attributes, body)
        except InvalidEvent as exc:
            return self._reject(400, str(exc), request.path)
        if self._identity is not None and subject:
            refusal = self._identity.authorize(
                endpoint.namespace, endpoint.name, subject, event.attributes
            )
            if refusal is not None:
                return self._refuse(refusal, request.path)
        size = event_size(event)
        if size > self._max_event_bytes:
            return self._reject(
                503, f"event of {size} bytes is over --max-event-bytes", request.path
            )
        return await self._store(endpoint, event, headers)

    async def _store(
        self, endpoint: BrokerEndpoint, event: StoredEvent, headers: Mapping[str, str]
    ) -> web.Response:
        pending = self.begin_store(endpoint, event, headers)
        try:
            await pending.future
        except LogError:
            pass  # end_store reports it
        finally:
            status = self.end_store(pending)
        if status != 202:
            return self._reject(status, STORE_FAILED, pending.path)
        return web.Response(status=202)

    # -- the pieces the fast path (cascade.broker.http.fast_ingress) shares -----------------

    def fast_endpoint(self, path: str) -> BrokerEndpoint | None:
        """The Broker at ``path`` when the fast path may take its request, else None (the
        request then goes through :meth:`handle`, which gives every refusal its answer)."""
        if self._identity is not None or self._draining():
            return None
        return self._endpoints.get(path[:-1] if path.endswith("/") else path)

    def fast_event(self, headers: Mapping[str, str], body: bytes) -> StoredEvent | None:
        """The event of a request :meth:`handle` would store, or None when it would refuse it."""
        try:
            if is_structured(headers.get("Content-Type")):
                event = StoredEvent(*structured_attributes(body))
            else:
                event = StoredEvent(binary_attributes(headers.items()), body)
        except InvalidEvent:
            return None
        if event_size(event) > self._max_event_bytes:
            return None
        return event

    def begin_store(
        self, endpoint: BrokerEndpoint, event: StoredEvent, headers: Mapping[str, str]
    ) -> PendingStore:
        """Queue ``event`` for the group commit; its future is done once it is durable."""
        parent = incoming_context(headers)
        span = None
        record_headers: dict[str, str] | None = None
        if parent is not None:
            span = self._tracing.ingress_span(
                parent, f"{endpoint.namespace}/{endpoint.name}", event
            )
            record_headers = headers_for(span, parent)
        future = endpoint.appender.submit(event, record_headers)
        return PendingStore(endpoint, event, future, span)

    def end_store(self, pending: PendingStore) -> int:
        """202 once the event is durable, 503 when storing it failed (or was abandoned)."""
        future = pending.future
        status = 202
        if future.cancelled() or not future.done():
            status = 503
        elif future.exception() is not None:
            status = 503
            endpoint = pending.endpoint
            logger.error(
                "broker %s/%s: event %s not stored: %s",
                endpoint.namespace,
                endpoint.name,
                pending.event.attributes.get("id"),
                future.exception(),
            )
        if pending.span is not None:
            pending.span.set_attribute("http.response.status_code", status)
            pending.span.end()
        if status == 202:
            self._metrics.accepted(pending.endpoint.namespace, pending.endpoint.name)
        return status

    def note_rejection(self, status: int, reason: str, path: str) -> str:
        """Count and log a refusal; return the reason as the REASON_HEADER value."""
        self._metrics.rejected(status)
        logger.info("ingress %s: %d %s", path, status, reason)
        return _header_safe(reason)

    def _refuse(self, refusal: Refusal, path: str) -> web.Response:
        response = self._reject(refusal.status, refusal.detail, path)
        if refusal.status in (401, 403):
            response.headers["WWW-Authenticate"] = refusal.www_authenticate()
        return response

    def _reject(self, status: int, reason: str, path: str) -> web.Response:
        # The body stays empty as on Knative; the reason rides in a header for people with curl.
        header = self.note_rejection(status, reason, path)
        return web.Response(status=status, headers={REASON_HEADER: header})


async def _continue_if_expected(request: web.BaseRequest) -> None:
    # curl sends "Expect: 100-continue" for bodies over 1 KiB and waits for this line; the
    # low-level aiohttp server leaves it to the handler.
    if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0


def _header_safe(text: str) -> str:
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return printable[:300]

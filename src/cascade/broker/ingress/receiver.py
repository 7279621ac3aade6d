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

from cascade.broker.event import StoredEvent
from cascade.broker.http.event import event_size
from cascade.broker.ingress.appender import Appender
from cascade.broker.log.base import LogError
from cascade.broker.oidc import BrokerIdentity
from cascade.broker.telemetry.metrics import BrokerMetrics
from cascade.broker.telemetry.tracing import BrokerTracing, headers_for, incoming_context
from cascade.codec import InvalidEvent, binary_attributes, is_structured, structured_attributes
from cascade.identity import Refusal

__all__ = ["REASON_HEADER", "BrokerEndpoint", "Ingress", "broker_path"]

REASON_HEADER = "Cascade-Error"

logger = logging.getLogger(__name__)


def broker_path(namespace: str, name: str) -> str:
    return f"/{namespace}/{name}"


@dataclass(frozen=True)
class BrokerEndpoint:
    namespace: str
    name: str
    appender: Appender


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
        parent = incoming_context(headers)
        span = None
        record_headers: dict[str, str] | None = None
        if parent is not None:
            span = self._tracing.ingress_span(
                parent, f"{endpoint.namespace}/{endpoint.name}", event
            )
            record_headers = headers_for(span, parent)
        status = 202
        try:
            await endpoint.appender.append(event, record_headers)
        except LogError as exc:
            status = 503
            logger.error(
                "broker %s/%s: event %s not stored: %s",
                endpoint.namespace,
                endpoint.name,
                event.attributes.get("id"),
                exc,
            )
        finally:
            if span is not None:
                span.set_attribute("http.response.status_code", status)
                span.end()
        if status != 202:
            return self._reject(
                status, "storing the event failed", f"/{endpoint.namespace}/{endpoint.name}"
            )
        self._metrics.accepted(endpoint.namespace, endpoint.name)
        return web.Response(status=202)

    def _refuse(self, refusal: Refusal, path: str) -> web.Response:
        response = self._reject(refusal.status, refusal.detail, path)
        if refusal.status in (401, 403):
            response.headers["WWW-Authenticate"] = refusal.www_authenticate()
        return response

    def _reject(self, status: int, reason: str, path: str) -> web.Response:
        self._metrics.rejected(status)
        logger.info("ingress %s: %d %s", path, status, reason)
        # The body stays empty as on Knative; the reason rides in a header for people with curl.
        return web.Response(status=status, headers={REASON_HEADER: _header_safe(reason)})


async def _continue_if_expected(request: web.BaseRequest) -> None:
    # curl sends "Expect: 100-continue" for bodies over 1 KiB and waits for this line; the
    # low-level aiohttp server leaves it to the handler.
    if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0


def _header_safe(text: str) -> str:
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return printable[:300]

"""One HTTP delivery attempt in binary mode, with the headers of §8.1 and a CLIENT span.

Headers sent: ``ce-*`` for every attribute and extension, ``Content-Type`` from
``datacontenttype`` (nothing when unset), ``Prefer: reply``, ``Kn-Namespace`` (the Trigger's
namespace) and W3C trace headers only when the record carries trace context (§7.1). No header
of the producer's request is forwarded: only the CloudEvent was stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from opentelemetry.trace import Span, Status, StatusCode

from cascade.broker.dispatch.delivery import HttpResponse, TransportError, Verdict, classify
from cascade.broker.event import StoredEvent
from cascade.broker.http.client import HttpClient, HttpProtocolError
from cascade.broker.telemetry.metrics import BrokerMetrics
from cascade.broker.telemetry.tracing import BrokerTracing, headers_for, incoming_context
from cascade.codec import binary_headers

__all__ = ["AttemptTarget", "HttpSender", "TokenFor", "delivery_headers"]

_NO_CONTENT_TYPE = frozenset({"Content-Type"})


@dataclass(frozen=True)
class AttemptTarget:
    """Where and for whom an attempt goes: ``kind`` is ``subscriber`` or ``dead-letter sink``."""

    url: str
    namespace: str
    trigger: str
    kind: str
    audience: str | None = None  # with --oidc: a token for it goes along (none for a bare URI)


TokenFor = Callable[[str, str, str], str]
"""``(namespace, trigger, audience)`` → a bearer token in the Trigger's name."""


def delivery_headers(target: AttemptTarget, event: StoredEvent) -> dict[str, str]:
    """The headers of a delivery (§8.1), trace context aside: binary mode, Prefer, namespace."""
    headers = binary_headers(event.attributes)
    headers["Prefer"] = "reply"
    headers["Kn-Namespace"] = target.namespace
    return headers


class HttpSender:
    """Plain ``http://`` goes through the lean HttpClient (the hot path), ``https://`` aiohttp.

    Both read at most ``max_answer_bytes`` of an answer's body (chunked or not); a longer one is
    a transport error, so the attempt is retried and the event ends in the dead-letter sink.
    """

    def __init__(
        self,
        client: HttpClient,
        session: aiohttp.ClientSession,
        tracing: BrokerTracing,
        metrics: BrokerMetrics,
        token_for: TokenFor | None = None,
        *,
        max_answer_bytes: int,
    ) -> None:
        self._client = client
        self._max_answer_bytes = max_answer_bytes
        self._session = session
        self._tracing = tracing
        self._metrics = metrics
        self._token_for = token_for

    async def send(
        self,
        target: AttemptTarget,
        event: StoredEvent,
        record_headers: Mapping[str, str],
        attempt: int,
        timeout: float,
    ) -> HttpResponse:
        """POST the event once; raise TransportError when no response came back."""
        headers = delivery_headers(target, event)
        if self._token_for is not None and target.audience is not None:
            token = self._token_for(target.namespace, target.trigger, target.audience)
            headers["Authorization"] = f"Bearer {token}"
        trace_headers: dict[str, str] = {}
        parent = incoming_context(record_headers)
        span = None
        if parent is not None:
            span = self._tracing.attempt_span(
                parent,
                trigger=f"{target.namespace}/{target.trigger}",
                target=target.kind,
                url=target.url,
                attempt=attempt,
                event=event,
            )
            trace_headers = headers_for(span, parent)
            headers.update(trace_headers)
        started = time.perf_counter()
        status: int | None = None
        try:
            if target.url.startswith("http://"):
                raw = await self._client.post(target.url, headers, event.data, timeout)
                response = HttpResponse(raw.status, raw.headers, raw.body, trace_headers)
            else:
                response = await self._send_with_aiohttp(target.url, headers, event.data, timeout)
                response = HttpResponse(
                    response.status, response.headers, response.body, trace_headers
                )
            status = response.status
            return response
        except TimeoutError as exc:
            raise TransportError(f"timed out after {timeout:g}s") from exc
        except (aiohttp.ClientError, OSError, HttpProtocolError, ValueError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._metrics.attempt_latency(
                target.namespace, target.trigger, time.perf_counter() - started
            )
            if span is not None:
                _end_attempt_span(span, status)

    async def _send_with_aiohttp(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> HttpResponse:
        # aiohttp would otherwise label the body application/octet-stream.
        skip = () if "Content-Type" in headers else _NO_CONTENT_TYPE
        async with self._session.post(
            url,
            data=body,
            headers=headers,
            skip_auto_headers=skip,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as answer:
            body = await answer.content.read(self._max_answer_bytes + 1)
            while len(body) <= self._max_answer_bytes and not answer.content.at_eof():
                more = await answer.content.read(self._max_answer_bytes + 1 - len(body))
                if not more:
                    break
                body += more
            if len(body) > self._max_answer_bytes:
                raise HttpProtocolError(f"response body larger than {self._max_answer_bytes} bytes")
            return HttpResponse(answer.status, answer.headers, body)


def _end_attempt_span(span: Span, status: int | None) -> None:
    outcome = classify(status).value if status is not None else "transport-error"
    span.set_attribute("cascade.delivery.outcome", outcome)
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if outcome != Verdict.SUCCESS.value:
        span.set_status(Status(StatusCode.ERROR, outcome))
    span.end()

"""Originate events: POST them to ``K_SINK`` in binary mode, with retries and trace context.

Knative's SinkBinding injects ``K_SINK`` (where to send) and ``K_CE_OVERRIDES`` (extensions to
add); locally ``cascade run`` sets them to the broker's ingress. The publisher:

- sends binary mode (``ce-*`` headers + JSON body), with ``partitionkey`` when given;
- opens a PRODUCER span ``send <type>``, injects the W3C ``traceparent`` header from it, and
  sets the CloudEvents ``traceparent`` extension once, here, as the event's origin;
- retries connection errors, 5xx, 404, 408, 409 and 429 with bounded exponential backoff
  (full jitter, ``Retry-After`` honoured up to the backoff cap), then raises
  :class:`PublishError`; other 4xx raise at once. A publish never fails silently.

The bytes go out through a :class:`SinkTransport`: urllib3 by default (pooled, thread-safe;
toolchain.md measured it at a third of the CPU of httpx/requests per request). Tests swap it for
one that keeps what was sent (``cascade.testing.RecordingTransport``) or hands it to an
in-process broker (``cascade.testing.Chain``); everything above the transport (attributes,
trace context, retries) runs as in production.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import urllib3
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from cascade._version import __version__
from cascade.closing import ClosesOnExit
from cascade.codec import binary_headers
from cascade.events import Event
from cascade.reply import Reply, check_extensions, outgoing_attributes
from cascade.settings import Settings
from cascade.telemetry.tracing import CONVERSATION_ID, traceparent_of

__all__ = [
    "BearerTransport",
    "PublishError",
    "Publisher",
    "SinkAnswer",
    "SinkTransport",
    "SinkUnreachable",
    "TokenFile",
    "Urllib3Transport",
    "as_reply",
    "is_retryable",
]

RETRYABLE_STATUSES: Final = frozenset({404, 408, 409, 429})
_TOKEN_FILE_MAX_BYTES: Final = 16 * 1024
_log = logging.getLogger("cascade.publish")


class PublishError(RuntimeError):
    """The event could not be delivered to the sink; nothing was accepted."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


@dataclass(frozen=True)
class SinkAnswer:
    """The sink's HTTP answer to one POST."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class SinkUnreachable(Exception):
    """No HTTP answer came back (refused, reset, timed out); the publisher retries it."""


class SinkTransport(Protocol):
    """Sends one binary-mode CloudEvent to the sink; the seam tests replace."""

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> SinkAnswer:
        """POST once; raise :class:`SinkUnreachable` when nothing answered."""
        ...

    def close(self) -> None: ...


class Urllib3Transport:
    """The default transport: a urllib3 pool, created on first use (after fork)."""

    def __init__(self) -> None:
        self._pool: urllib3.PoolManager | None = None

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> SinkAnswer:
        if self._pool is None:  # so a publisher built before fork never shares sockets
            self._pool = urllib3.PoolManager(num_pools=4, maxsize=16, block=False)
        try:
            response = self._pool.request(
                "POST",
                url,
                body=body,
                headers=dict(headers),
                timeout=urllib3.Timeout(total=timeout),
                retries=False,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise SinkUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return SinkAnswer(response.status, response.headers, response.data)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()
            self._pool = None


class TokenFile:
    """A bearer token read from a file, read again when the file changes.

    On a cluster this is a projected service account token (the kubelet rotates it); under
    ``cascade run --oidc`` a token the local issuer minted. Read on use, so a rotation needs no
    restart; bounded, so a wrong path cannot make the process read a huge file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._token = ""
        self._lock = threading.Lock()

    def __call__(self) -> str:
        try:
            status = self.path.stat()
        except OSError as exc:
            raise OSError(f"cannot read the token file {self.path}: {exc.strerror}") from None
        stamp = (status.st_mtime_ns, status.st_size)
        with self._lock:
            if stamp != self._stamp:
                if status.st_size > _TOKEN_FILE_MAX_BYTES:
                    raise OSError(
                        f"the token file {self.path} is over {_TOKEN_FILE_MAX_BYTES} bytes"
                    )
                token = self.path.read_text(encoding="ascii", errors="replace").strip()
                if not token:
                    raise OSError(f"the token file {self.path} is empty")
                self._token, self._stamp = token, stamp
            return self._token


class BearerTransport:
    """Adds ``Authorization: Bearer <token>`` to every POST of another transport.

    The sender-identity half of publishing: a Broker with EventPolicies (Knative's, or
    ``cascade broker --oidc``) admits the event only with a token for its audience.
    """

    def __init__(self, inner: SinkTransport, token: Callable[[], str]) -> None:
        self.inner = inner
        self._token = token

    def post(self, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> SinkAnswer:
        try:
            token = self._token()
        except OSError as exc:
            raise PublishError(f"no token to publish with: {exc}") from None
        return self.inner.post(url, {**headers, "Authorization": f"Bearer {token}"}, body, timeout)

    def close(self) -> None:
        self.inner.close()


class Publisher(ClosesOnExit):
    """Sends events to one sink. Thread-safe; reuse one per process."""

    def __init__(
        self,
        sink: str | None,
        source: str,
        *,
        retries: int = 5,
        backoff_seconds: float = 0.1,
        backoff_max_seconds: float = 5.0,
        timeout_seconds: float = 10.0,
        extensions: Mapping[str, str] | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: SinkTransport | None = None,
    ) -> None:
        if not source:
            raise ValueError("a publisher needs a non-empty CloudEvents source")
        self.sink = sink
        self.source = source
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.timeout_seconds = timeout_seconds
        self.extensions = dict(extensions or {})
        check_extensions(self.extensions)
        self._tracer = trace.get_tracer("cascade.publish", __version__, tracer_provider)
        self._sleep = sleep
        self.transport: SinkTransport = transport or Urllib3Transport()

    @classmethod
    def from_env(
        cls,
        source: str | None = None,
        *,
        settings: Settings | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> Publisher:
        """A publisher for ``K_SINK`` (and ``K_CE_OVERRIDES``, ``CASCADE_PUBLISH_*``).

        ``source`` defaults to ``CASCADE_SOURCE``, then to ``/<K_SERVICE>`` (the Knative
        Service name Knative Serving sets); one of them is required.
        """
        settings = settings or Settings.from_env()
        if settings.sink is None:
            raise PublishError("K_SINK is not set: there is nowhere to publish to")
        service = os.environ.get("K_SERVICE", "").strip()
        chosen = source or settings.source or (f"/{service}" if service else None)
        if not chosen:
            raise ValueError("pass source=, or set CASCADE_SOURCE (or K_SERVICE)")
        return cls.from_settings(settings, chosen, tracer_provider=tracer_provider)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        source: str,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        transport: SinkTransport | None = None,
    ) -> Publisher:
        if settings.publish_token_file is not None:
            token = TokenFile(settings.publish_token_file)
            transport = BearerTransport(transport or Urllib3Transport(), token)
        return cls(
            settings.sink,
            source,
            retries=settings.publish_retries,
            backoff_seconds=settings.publish_backoff_seconds,
            backoff_max_seconds=settings.publish_backoff_max_seconds,
            timeout_seconds=settings.publish_timeout_seconds,
            extensions=settings.ce_overrides,
            tracer_provider=tracer_provider,
            transport=transport,
        )

    def publish(
        self,
        event: Event | Reply,
        *,
        subject: str | None = None,
        partitionkey: str | None = None,
        extensions: Mapping[str, str] | None = None,
        event_id: str | None = None,
    ) -> str:
        """Send ``event``; returns its CloudEvents id. Raises PublishError when it fails."""
        if self.sink is None:
            raise PublishError("K_SINK is not set: there is nowhere to publish to")
        reply = as_reply(event, subject=subject, partitionkey=partitionkey, extensions=extensions)
        return self.send(self.attributes_for(reply, event_id=event_id), reply.event.to_json_bytes())

    def attributes_for(self, reply: Reply, *, event_id: str | None = None) -> dict[str, str]:
        """The wire-form attributes ``reply`` goes out with (``K_CE_OVERRIDES`` included);
        the CloudEvents ``traceparent`` is added when it is sent."""
        return outgoing_attributes(
            reply.event,
            source=reply.source or self.source,
            subject=reply.subject,
            partitionkey=reply.partitionkey,
            extensions={**self.extensions, **reply.extensions},
            event_id=event_id,
        )

    def send(self, attributes: Mapping[str, str], data: bytes) -> str:
        """Send an event already in wire form, under a PRODUCER span that becomes its origin
        (the CloudEvents ``traceparent``); returns its id. Raises PublishError."""
        if self.sink is None:
            raise PublishError("K_SINK is not set: there is nowhere to publish to")
        attributes = dict(attributes)
        event_type = attributes["type"]
        span_attributes = {
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.message.id": attributes["id"],
            "cloudevents.event_id": attributes["id"],
            "cloudevents.event_source": attributes["source"],
            "cloudevents.event_type": event_type,
            "cloudevents.event_spec_version": "1.0",
            "server.address": self.sink,
        }
        if "partitionkey" in attributes:
            span_attributes[CONVERSATION_ID] = attributes["partitionkey"]
        with self._tracer.start_as_current_span(
            f"send {event_type}",
            kind=SpanKind.PRODUCER,
            attributes=span_attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            # The origin of the event is this span: set once, never rewritten downstream.
            origin = traceparent_of(span.get_span_context())
            if origin is not None:
                attributes["traceparent"] = origin
            headers = binary_headers(attributes)
            propagate.inject(headers)
            try:
                self._send(headers, data, span)
            except PublishError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
        return attributes["id"]

    def _send(self, headers: dict[str, str], body: bytes, span: trace.Span) -> None:
        assert self.sink is not None
        attempts = self.retries + 1
        last_status: int | None = None
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            try:
                response = self.transport.post(self.sink, headers, body, self.timeout_seconds)
            except SinkUnreachable as exc:
                problem = str(exc)
                last_status = None
            else:
                last_status = response.status
                span.set_attribute("http.response.status_code", response.status)
                if 200 <= response.status < 300:
                    span.set_attribute("cascade.publish.attempts", attempt)
                    return
                snippet = response.body[:200].decode("utf-8", "replace")
                problem = f"HTTP {response.status}: {snippet}"
                if response.status < 500 and response.status not in RETRYABLE_STATUSES:
                    raise PublishError(
                        f"sink {self.sink} refused the event ({problem})",
                        status=response.status,
                        attempts=attempt,
                    )
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt == attempts:
                raise PublishError(
                    f"sink {self.sink} unreachable after {attempts} attempts (last: {problem})",
                    status=last_status,
                    attempts=attempt,
                )
            delay = self._delay(attempt, retry_after)
            _log.warning(
                "publish attempt %d/%d failed (%s); retrying in %.2fs",
                attempt,
                attempts,
                problem,
                delay,
            )
            self._sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_seconds))
        return delay

    def close(self) -> None:
        self.transport.close()


def as_reply(
    event: Event | Reply,
    *,
    subject: str | None = None,
    partitionkey: str | None = None,
    extensions: Mapping[str, str] | None = None,
) -> Reply:
    """``event`` with its envelope choices (a Reply is taken as it is)."""
    if isinstance(event, Reply):
        return event
    return Reply(
        event, subject=subject, partitionkey=partitionkey, extensions=dict(extensions or {})
    )


def is_retryable(error: PublishError) -> bool:
    """Whether sending again may succeed: no answer, 5xx, or 404/408/409/429."""
    return error.status is None or error.status >= 500 or error.status in RETRYABLE_STATUSES


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff
    return seconds if seconds >= 0 else None

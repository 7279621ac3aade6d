"""Where a dead letter may be replayed to: only a subscriber the broker routes to.

A dead letter's ``knativeerrordest`` names the subscriber it failed at, but whoever can write
to the dead-letter sink writes that field too. Replaying blindly would POST a stored event to
any URL and relay that URL's answer to the broker as a reply: a forged dead letter could make
the tool confirm an unpaid order. So a replay goes only to a destination that is a Trigger's
subscriber, as the broker's ``/-/triggers`` lists them or as the manifests define them, or that
the operator names explicitly (``--allow-destination URL``); and only such a destination's
answer is ever forwarded to the broker as a reply. ``cascade dlq replay`` and the console share
this rule.

URLs are compared after normalising what does not change where a request goes: scheme and host
case, the default port, an empty path (``http://x`` is ``http://x:80/``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from cascade.broker.topology import ManifestError, load_topology
from cascade.http_client import Unreachable, request

__all__ = ["DestinationError", "KnownDestinations", "normalized_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class DestinationError(Exception):
    """The known destinations could not be learned (broker unreachable, bad manifests)."""


def normalized_url(url: str) -> str:
    """``url`` in the one spelling used for comparison; unparseable URLs are returned as is."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return url
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


@dataclass(frozen=True)
class KnownDestinations:
    """The subscribers the broker routes to, and the destinations the operator allowed."""

    subscribers: frozenset[str]
    allowed: frozenset[str] = frozenset()
    source: str = ""  # where the subscribers came from, for messages

    @classmethod
    def of(
        cls, subscribers: Iterable[str], allowed: Iterable[str] = (), source: str = ""
    ) -> KnownDestinations:
        return cls(
            frozenset(normalized_url(url) for url in subscribers),
            frozenset(normalized_url(url) for url in allowed),
            source,
        )

    @classmethod
    def from_broker(
        cls, broker_url: str, allowed: Iterable[str] = (), *, timeout: float = 30.0
    ) -> KnownDestinations:
        """The subscribers of every Trigger of the broker at ``broker_url`` (its ingress URL
        works too), from its ``GET /-/triggers``."""
        parts = urlsplit(broker_url)
        triggers_url = urlunsplit((parts.scheme, parts.netloc, "/-/triggers", "", ""))
        try:
            answer = request("GET", triggers_url, timeout=timeout)
        except Unreachable as exc:
            raise DestinationError(f"cannot learn the broker's Triggers: {exc}") from None
        if not answer.ok:
            raise DestinationError(
                f"cannot learn the broker's Triggers: GET {triggers_url} answered {answer.status}"
            )
        try:
            triggers: Any = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            raise DestinationError(f"GET {triggers_url} did not answer JSON") from None
        if not isinstance(triggers, list):
            raise DestinationError(f"GET {triggers_url} did not answer a list of Triggers")
        subscribers = [
            str(t["subscriber"]) for t in triggers if isinstance(t, dict) and t.get("subscriber")
        ]
        return cls.of(subscribers, allowed, triggers_url)

    @classmethod
    def from_manifests(
        cls, files: Sequence[Path], allowed: Iterable[str] = ()
    ) -> KnownDestinations:
        """The subscribers of the Triggers in Knative manifests (``kubectl get
        brokers,triggers,ksvc -o yaml`` from a cluster works: refs resolve by ``status``)."""
        try:
            topology = load_topology(list(files))
        except ManifestError as exc:
            raise DestinationError(f"cannot read the manifests: {exc}") from None
        subscribers = [trigger.subscriber for trigger in topology.triggers]
        return cls.of(subscribers, allowed, ", ".join(str(f) for f in files))

    @classmethod
    def learn(
        cls,
        broker_url: str,
        manifests: Sequence[Path] = (),
        allowed: Iterable[str] = (),
        *,
        timeout: float = 30.0,
    ) -> tuple[KnownDestinations, str | None]:
        """From ``manifests`` when given, else from the broker; when neither can be read, only
        ``allowed`` is known, and the second item says why."""
        try:
            if manifests:
                return cls.from_manifests(manifests, allowed), None
            return cls.from_broker(broker_url, allowed, timeout=timeout), None
        except DestinationError as exc:
            return cls.of((), allowed, f"nowhere: {exc}"), str(exc)

    def permits(self, destination: str) -> bool:
        url = normalized_url(destination)
        return url in self.subscribers or url in self.allowed

    def refusal(self, destination: str) -> str:
        """Why ``destination`` is refused, naming it and how to allow it."""
        where = f" (Triggers from {self.source})" if self.source else ""
        return (
            f"refused: {destination} is not a subscriber the broker routes to{where}; "
            f"if you trust it, name it with --allow-destination {destination}"
        )

"""Sender identity: check the bearer token Knative's ``authentication-oidc`` puts on deliveries.

Knative Serving does not check those tokens for a Knative Service, so the runtime does. With
``CASCADE_OIDC_AUDIENCE`` set, every CloudEvent request needs ``Authorization: Bearer <JWT>``:

- signed by a key of the issuer's JWKS (``CASCADE_OIDC_JWKS_URL``, or found through OIDC
  discovery at ``CASCADE_OIDC_ISSUER``); keys are cached and fetched again for an unknown ``kid``
  (at most once per cool-down), with a bounded read and timeout;
- ``aud`` equal to the audience, ``iss`` equal to the issuer when one is named, ``exp``/``nbf``
  checked with a small leeway;
- ``sub`` allowed by ``CASCADE_OIDC_ALLOWED_SUBJECTS`` (comma list; a trailing ``*`` matches a
  prefix, as an EventPolicy's ``from.sub`` does; unset allows any subject).

Missing or invalid token: 401. A valid token from a subject not allowed: 403. Keys that cannot be
fetched: 503, so the sender retries instead of dead-lettering a good event.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jwt
from jwt import PyJWK, PyJWKSet

__all__ = [
    "KEYS_MAX_BYTES",
    "Refusal",
    "SenderVerifier",
    "subject_allowed",
]

# Asymmetric algorithms only: a shared-secret (HS*) or "none" token could be minted by anyone
# who read the JWKS.
_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
KEYS_MAX_BYTES: Final = 256 * 1024
_FETCH_TIMEOUT_SECONDS: Final = 5.0
_KEYS_TTL_SECONDS: Final = 300.0
_REFRESH_COOLDOWN_SECONDS: Final = 10.0
_TOKEN_MAX_BYTES: Final = 16 * 1024
_VERIFIED_MAX: Final = 1024  # tokens are reused per (Trigger, audience): few distinct ones

Fetch = Callable[[str], Any]


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: HTTP status, a metric reason and a message for the sender."""

    status: int
    reason: str
    detail: str

    def www_authenticate(self) -> str:
        # RFC 6750 §3: no error code when no credentials were sent at all.
        if self.reason == "missing":
            return 'Bearer realm="cascade"'
        code = "insufficient_scope" if self.status == 403 else "invalid_token"
        return f'Bearer realm="cascade", error="{code}"'


class KeysUnavailable(Exception):
    """The issuer's keys could not be fetched or read."""


def fetch_json(url: str, *, limit: int = KEYS_MAX_BYTES) -> Any:
    """GET ``url`` and parse JSON, reading at most ``limit`` bytes within a timeout."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT_SECONDS) as response:
            body = response.read(limit + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise KeysUnavailable(f"cannot fetch {url}: {exc}") from None
    if len(body) > limit:
        raise KeysUnavailable(f"{url} answered more than {limit} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise KeysUnavailable(f"{url} did not answer JSON") from None


def subject_allowed(subject: str, allowed: Sequence[str]) -> bool:
    """EventPolicy ``from.sub`` matching: exact, or a prefix when the entry ends with ``*``."""
    if not allowed:
        return True
    for entry in allowed:
        if entry.endswith("*"):
            if subject.startswith(entry[:-1]):
                return True
        elif subject == entry:
            return True
    return False


class _KeyCache:
    """The issuer's JWKS, fetched on first use, kept for a TTL, refreshed for an unknown kid."""

    def __init__(self, jwks_url: Callable[[], str], fetch: Fetch, clock: Callable[[], float]):
        self._jwks_url = jwks_url
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[PyJWK] = []
        self._fetched_at: float | None = None

    def key_for(self, kid: str | None) -> PyJWK | None:
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > _KEYS_TTL_SECONDS
            if stale:
                self._refresh(now)
            key = self._match(kid)
            cooled = self._fetched_at is None or now - self._fetched_at >= _REFRESH_COOLDOWN_SECONDS
            if key is None and not stale and cooled:
                self._refresh(now)  # rotated keys: fetch once more, not on every forged kid
                key = self._match(kid)
            return key

    def _refresh(self, now: float) -> None:
        document = self._fetch(self._jwks_url())
        if not isinstance(document, dict):
            raise KeysUnavailable("the JWKS is not a JSON object")
        try:
            key_set = PyJWKSet.from_dict(document)
        except jwt.PyJWTError as exc:
            raise KeysUnavailable(f"the JWKS has no usable key: {exc}") from None
        self._keys = list(key_set.keys)
        self._fetched_at = now

    def _match(self, kid: str | None) -> PyJWK | None:
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        return next((key for key in self._keys if key.key_id == kid), None)


class SenderVerifier:
    """Checks one ``Authorization`` header value; thread-safe, one per process."""

    def __init__(
        self,
        *,
        audience: str,
        issuer: str | None = None,
        jwks_url: str | None = None,
        allowed_subjects: Sequence[str] = (),
        leeway_seconds: float = 30.0,
        fetch: Fetch = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if issuer is None and jwks_url is None:
            raise ValueError("an OIDC audience needs an issuer or a JWKS URL to check tokens")
        self.audience = audience
        self.issuer = issuer
        self.allowed_subjects = tuple(allowed_subjects)
        self.leeway_seconds = leeway_seconds
        self._jwks_url = jwks_url
        self._fetch = fetch
        self._keys = _KeyCache(self._locate_jwks, fetch, clock)
        # Verified tokens and their (exp, sub): a signature verified once need not be again.
        self._verified: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._verified_lock = threading.Lock()

    def _locate_jwks(self) -> str:
        if self._jwks_url is None:
            assert self.issuer is not None
            discovery = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            document = self._fetch(discovery)
            uri = document.get("jwks_uri") if isinstance(document, dict) else None
            if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
                raise KeysUnavailable(f"{discovery} names no jwks_uri")
            self._jwks_url = uri
        return self._jwks_url

    def check(self, authorization: str | None) -> Refusal | None:
        """``None`` when the sender may deliver, else why not."""
        subject = self.authenticate(authorization)
        if isinstance(subject, Refusal):
            return subject
        if subject_allowed(subject, self.allowed_subjects):
            return None
        return Refusal(403, "subject", f"sender {subject!r} may not deliver to this function")

    def authenticate(self, authorization: str | None) -> str | Refusal:
        """The subject of a valid token, or why the token is not valid."""
        if not authorization:
            return Refusal(401, "missing", "a bearer token is required (Authorization)")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Refusal(401, "malformed", "the Authorization header is not 'Bearer <token>'")
        if len(token) > _TOKEN_MAX_BYTES:
            return Refusal(401, "malformed", f"the token is longer than {_TOKEN_MAX_BYTES} bytes")
        with self._verified_lock:
            known = self._verified.get(token)
        if known is not None and time.time() <= known[0] + self.leeway_seconds:
            return known[1]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return Refusal(401, "malformed", "the bearer token is not a JWT")
        algorithm = header.get("alg")
        if algorithm not in _ALGORITHMS:
            return Refusal(401, "algorithm", f"tokens signed with {algorithm!r} are not accepted")
        kid = header.get("kid")
        try:
            key = self._keys.key_for(kid if isinstance(kid, str) else None)
        except KeysUnavailable as exc:
            return Refusal(503, "keys_unavailable", f"the issuer's keys are unavailable: {exc}")
        if key is None:
            return Refusal(
                401, "unknown_key", "the token is signed by a key the issuer does not list"
            )
        return self._verify(token, key, algorithm)

    def _verify(self, token: str, key: PyJWK, algorithm: str) -> str | Refusal:
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            return Refusal(401, "expired", "the token has expired")
        except jwt.ImmatureSignatureError:
            return Refusal(401, "not_yet_valid", "the token is not valid yet (nbf/iat)")
        except jwt.InvalidAudienceError:
            return Refusal(401, "audience", f"the token is not for audience {self.audience!r}")
        except jwt.InvalidIssuerError:
            return Refusal(401, "issuer", f"the token is not from issuer {self.issuer!r}")
        except jwt.InvalidSignatureError:
            return Refusal(401, "signature", "the token's signature does not verify")
        except jwt.MissingRequiredClaimError as exc:
            return Refusal(401, "claims", f"the token lacks the {exc.claim!r} claim")
        except jwt.PyJWTError as exc:
            return Refusal(401, "invalid", f"the token is invalid: {type(exc).__name__}")
        subject, expires = claims["sub"], claims["exp"]
        if not isinstance(subject, str) or not subject:
            return Refusal(401, "claims", "the token's 'sub' claim is not a non-empty string")
        with self._verified_lock:
            self._verified[token] = (float(expires), subject)
            if len(self._verified) > _VERIFIED_MAX:
                self._verified.popitem(last=False)
        return subject

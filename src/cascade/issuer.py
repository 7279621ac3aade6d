"""A local OIDC issuer: what the cluster's API server is to Knative, for `cascade broker --oidc`.

It holds one RSA key for the life of the process, serves an OIDC discovery document and a JWKS,
and signs short-lived RS256 tokens (``iss``, ``sub``, ``aud``, ``iat``, ``nbf``, ``exp``) as
Kubernetes does for a service account. Tokens are reused until most of their life has passed,
as Knative's token provider does, so signing stays off the delivery hot path.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

__all__ = ["LocalIssuer", "knative_child_name", "trigger_subject"]

DEFAULT_TOKEN_TTL_SECONDS: Final = 600.0
_REUSE_SHARE: Final = 0.8  # a cached token is re-signed after 80% of its life
_NAME_MAX: Final = 63
_MD5_HEX: Final = 32


def knative_child_name(parent: str, suffix: str) -> str:
    """knative.dev/pkg kmeta.ChildName: ``parent + suffix``, hashed to fit 63 characters."""
    if len(parent) <= _NAME_MAX - len(suffix):
        return parent + suffix
    head = _NAME_MAX - _MD5_HEX
    if head - len(suffix) <= 0:
        digest = hashlib.md5((parent + suffix).encode(), usedforsecurity=False).hexdigest()
        name = parent[:head] + digest
        name += suffix[: max(0, _NAME_MAX - len(name))]
    else:
        digest = hashlib.md5(parent.encode(), usedforsecurity=False).hexdigest()
        name = parent[: head - len(suffix)] + digest + suffix
    return name.rstrip("-.")


def trigger_subject(namespace: str, trigger: str) -> str:
    """The ``sub`` of a Trigger's OIDC identity, as Knative names its service account."""
    account = knative_child_name(trigger, "-oidc-eventing.knative.dev-trigger").lower()
    return f"system:serviceaccount:{namespace}:{account}"


class LocalIssuer:
    """Signs tokens for ``(subject, audience)`` and publishes the key that checks them."""

    def __init__(
        self,
        url: str,
        *,
        key: rsa.RSAPrivateKey | None = None,
        token_ttl_seconds: float = DEFAULT_TOKEN_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self.token_ttl_seconds = token_ttl_seconds
        self._clock = clock
        self._key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        self.kid = hashlib.sha256(json.dumps(public, sort_keys=True).encode()).hexdigest()[:16]
        self._jwk: dict[str, Any] = {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}
        self._tokens: dict[tuple[str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_key_file(cls, url: str, path: Path, **options: Any) -> LocalIssuer:
        """An issuer whose key lives in ``path`` (PEM, owner-only), made there on first use.

        The file is the local root of trust: whoever reads it can mint tokens, exactly as whoever
        can write the data directory can write the log itself.
        """
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key")
            return cls(url, key=loaded, **options)
        issuer = cls(url, **options)
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = issuer._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        return issuer

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    def now(self) -> float:
        return self._clock()

    def discovery(self) -> dict[str, Any]:
        """The OIDC discovery document (``/.well-known/openid-configuration``)."""
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._jwk)]}

    def token(self, subject: str, audience: str) -> str:
        """A token for ``audience`` in the name of ``subject``, reused while fresh."""
        now = self._clock()
        key = (subject, audience)
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and now < cached[0]:
                return cached[1]
            token = self.sign(subject, audience, now=now)
            self._tokens[key] = (now + self.token_ttl_seconds * _REUSE_SHARE, token)
            return token

    def sign(self, subject: str, audience: str, *, now: float | None = None, **claims: Any) -> str:
        """A fresh token; ``claims`` add to or replace the standard ones (tests use this)."""
        issued = int(self._clock() if now is None else now)
        payload: dict[str, Any] = {
            "iss": self.url,
            "sub": subject,
            "aud": audience,
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(self.token_ttl_seconds),
        }
        payload.update(claims)
        return jwt.encode(payload, self._key, algorithm="RS256", headers={"kid": self.kid})

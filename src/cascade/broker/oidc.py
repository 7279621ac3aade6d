"""``cascade broker --oidc``: the local broker issues and checks sender identity as Knative does.

- It is an OIDC issuer: ``/-/oidc/.well-known/openid-configuration`` and ``.../jwks.json`` on its
  HTTP port, with a key kept in ``<data-dir>/oidc/issuer-key.pem``.
- Every delivery, dead letter and reply goes in the name of its Trigger
  (``system:serviceaccount:<ns>:<trigger>-oidc-eventing.knative.dev-trigger``), with a token for
  the destination's audience (``subscriber.audience``, else a Knative Service's default).
- The ingress takes a request when an EventPolicy for the Broker allows its token's subject and
  its event passes the policy's filters. With no policy for a Broker, Knative's default
  authorization mode applies (``allow-same-namespace``: any token of a subject of the Broker's
  namespace). A reply is checked the same way, in its Trigger's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Literal

from cascade.broker.topology.build import broker_audience
from cascade.broker.topology.event_policy import EventPolicyConfig, policies_for
from cascade.identity import Refusal, SenderVerifier, subject_allowed
from cascade.issuer import LocalIssuer, trigger_subject

__all__ = ["ISSUER_PATH", "AuthorizationMode", "BrokerIdentity", "issuer_key_path"]

ISSUER_PATH: Final = "/-/oidc"
AuthorizationMode = Literal["allow-same-namespace", "allow-all", "deny-all"]


def issuer_key_path(data_dir: Path) -> Path:
    return data_dir / "oidc" / "issuer-key.pem"


class BrokerIdentity:
    def __init__(
        self,
        issuer: LocalIssuer,
        policies: Sequence[EventPolicyConfig],
        *,
        default_mode: AuthorizationMode = "allow-same-namespace",
    ) -> None:
        self.issuer = issuer
        self.default_mode = default_mode
        self._policies = tuple(policies)
        self._verifiers: dict[str, SenderVerifier] = {}

    @classmethod
    def for_broker(
        cls,
        base_url: str,
        data_dir: Path,
        policies: Sequence[EventPolicyConfig],
        *,
        default_mode: AuthorizationMode = "allow-same-namespace",
    ) -> BrokerIdentity:
        issuer = LocalIssuer.from_key_file(base_url + ISSUER_PATH, issuer_key_path(data_dir))
        return cls(issuer, policies, default_mode=default_mode)

    def documents(self) -> dict[str, Mapping[str, object]]:
        """The issuer's documents by request path, for the admin routes."""
        return {
            ISSUER_PATH + "/.well-known/openid-configuration": self.issuer.discovery(),
            ISSUER_PATH + "/.well-known/jwks.json": self.issuer.jwks(),
        }

    def trigger_token(self, namespace: str, trigger: str, audience: str) -> str:
        return self.issuer.token(trigger_subject(namespace, trigger), audience)

    def authenticate(self, namespace: str, broker: str, authorization: str | None) -> str | Refusal:
        """Before the body is read: the sender's subject, ``""`` when no token is needed."""
        if not policies_for(self._policies, namespace, broker) and self.default_mode == "allow-all":
            return ""
        audience = broker_audience(namespace, broker)
        verifier = self._verifiers.get(audience)
        if verifier is None:
            jwks = self.issuer.jwks()
            verifier = SenderVerifier(
                audience=audience,
                issuer=self.issuer.url,
                jwks_url=self.issuer.jwks_url,
                fetch=lambda _url: jwks,
            )
            self._verifiers[audience] = verifier
        return verifier.authenticate(authorization)

    def authorize(
        self, namespace: str, broker: str, subject: str, attributes: Mapping[str, str]
    ) -> Refusal | None:
        """Once the event is parsed: may ``subject`` send it to this Broker?"""
        policies = policies_for(self._policies, namespace, broker)
        if not policies:
            if self.default_mode == "allow-all":
                return None
            if self.default_mode == "allow-same-namespace" and subject_allowed(
                subject, (f"system:serviceaccount:{namespace}:*",)
            ):
                return None
            return Refusal(
                403,
                "policy",
                f"no EventPolicy applies to broker {namespace}/{broker} and the default mode "
                f"{self.default_mode} does not allow {subject!r}",
            )
        for policy in policies:
            if subject_allowed(subject, policy.subjects) and (
                policy.filter is None or policy.filter.matches(attributes)
            ):
                return None
        names = ", ".join(policy.name for policy in policies)
        return Refusal(
            403,
            "policy",
            f"no EventPolicy of broker {namespace}/{broker} ({names}) allows {subject!r} to "
            f"send type {attributes.get('type')!r}",
        )

    def authorize_reply(
        self, namespace: str, broker: str, trigger: str, attributes: Mapping[str, str]
    ) -> Refusal | None:
        """A reply enters the Broker in its Trigger's name."""
        return self.authorize(namespace, broker, trigger_subject(namespace, trigger), attributes)

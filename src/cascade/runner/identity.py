"""``cascade run --oidc``: each function checks its senders and publishes with its own token.

The same identities as on a cluster with the chart's ``security.oidc.enabled``:

- a function's audience is ``serving.knative.dev/service/<ns>/<name>``; it accepts only the
  Triggers that deliver to it (as subscriber or as their dead-letter sink), by their Knative
  subjects, and finds the keys through the broker's issuer (``/-/oidc``);
- a function a SinkBinding gives ``K_SINK`` publishes in the SinkBinding's name
  (``<binding>-oidc-sources.knative.dev-sinkbinding``) with a token for the Broker's audience,
  minted here with the broker's key into ``<data-dir>/oidc/tokens/<function>.jwt`` (owner-only),
  the file a cluster would mount at ``/oidc/token``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from cascade.broker.oidc import ISSUER_PATH, issuer_key_path
from cascade.broker.topology import Topology
from cascade.broker.topology.build import broker_audience, service_audience
from cascade.issuer import LocalIssuer, knative_child_name, trigger_subject

__all__ = ["NO_SUBJECT", "PUBLISH_TOKEN_TTL_SECONDS", "function_identity_env"]

# A local publish token outlives any run (a cluster's is rotated by the kubelet); it is minted
# again at every start.
PUBLISH_TOKEN_TTL_SECONDS: Final = 7 * 24 * 3600
NO_SUBJECT: Final = "none"  # an allow-list that matches no subject: nobody may deliver


def sink_binding_subject(namespace: str, binding: str) -> str:
    account = knative_child_name(binding, "-oidc-sources.knative.dev-sinkbinding").lower()
    return f"system:serviceaccount:{namespace}:{account}"


def function_identity_env(
    topology: Topology,
    name: str,
    namespace: str,
    *,
    broker_url: str,
    data_dir: Path,
    sink: tuple[str, str] | None,
) -> dict[str, str]:
    """The environment that turns sender identity on for function ``name``."""
    audience = service_audience(namespace, name)
    senders = sorted(
        {
            trigger_subject(t.namespace, t.name)
            for t in topology.triggers
            if t.subscriber_audience == audience or t.delivery.dead_letter_audience == audience
        }
    )
    env = {
        "CASCADE_OIDC_AUDIENCE": audience,
        "CASCADE_OIDC_ISSUER": broker_url + ISSUER_PATH,
        "CASCADE_OIDC_ALLOWED_SUBJECTS": ",".join(senders) or NO_SUBJECT,
    }
    if sink is not None:
        url, binding = sink
        path = urlsplit(url).path.strip("/").split("/")
        if len(path) == 2:  # a Broker's ingress: /<namespace>/<broker>
            issuer = LocalIssuer.from_key_file(broker_url + ISSUER_PATH, issuer_key_path(data_dir))
            token = issuer.sign(
                sink_binding_subject(namespace, binding),
                broker_audience(*path),
                exp=int(issuer.now()) + PUBLISH_TOKEN_TTL_SECONDS,
            )
            env["CASCADE_PUBLISH_TOKEN_FILE"] = str(_write_token(data_dir, name, token))
    return env


def _write_token(data_dir: Path, name: str, token: str) -> Path:
    folder = data_dir / "oidc" / "tokens"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jwt"
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token)
    temporary.replace(path)  # atomic: a running function never reads half a token
    return path

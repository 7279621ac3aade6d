"""`cascade serve` with CASCADE_OIDC_AUDIENCE: gunicorn workers check every sender's token."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.integration.server import Server, serve
from tests.issuer_server import IssuerServer

pytestmark = pytest.mark.slow

AUDIENCE = "serving.knative.dev/service/default/probe"
ALLOWED = "system:serviceaccount:default:inventory-order-created-oidc-eventing.knative.dev-trigger"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[Server, IssuerServer]]:
    issuer = IssuerServer()
    env = {
        "CASCADE_OIDC_AUDIENCE": AUDIENCE,
        "CASCADE_OIDC_ISSUER": issuer.issuer.url,
        "CASCADE_OIDC_ALLOWED_SUBJECTS": "system:serviceaccount:default:inventory-*",
    }
    with issuer.server, serve(tmp_path, "--workers", "2", env=env) as server:
        yield server, issuer


def post(server: Server, token: str | None) -> tuple[int, dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/integration",
        "ce-type": "com.example.probe.command",
        "Content-Type": "application/json",
    }
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    answer = server.request("POST", "/", orjson.dumps({"action": "none"}), headers)
    return answer.status, dict(answer.headers), answer.body


def test_only_a_valid_allowed_sender_is_served(guarded: tuple[Server, IssuerServer]) -> None:
    server, issuer = guarded
    local = issuer.issuer
    cases = {
        "no token": (None, 401),
        "wrong audience": (local.sign(ALLOWED, "serving.knative.dev/service/default/x"), 401),
        "expired": (local.sign(ALLOWED, AUDIENCE, exp=int(time.time()) - 3600), 401),
        "badly signed": (local.sign(ALLOWED, AUDIENCE)[:-8] + "AAAAAAAA", 401),
        "subject not allowed": (
            local.token("system:serviceaccount:default:mallory", AUDIENCE),
            403,
        ),
        "good": (local.token(ALLOWED, AUDIENCE), 204),
    }
    for name, (token, status) in cases.items():
        got, headers, body = post(server, token)
        assert got == status, f"{name}: {got} {body!r}"
        if status in (401, 403):
            assert headers.get("www-authenticate", "").startswith("Bearer"), name
    assert server.metric("cascade_sender_refusals_total") == 5
    assert server.request("GET", "/health/readiness").status == 200

"""Sender identity: tokens checked against a real issuer's JWKS served over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade.identity import SenderVerifier, subject_allowed
from cascade.issuer import LocalIssuer, knative_child_name, trigger_subject
from cascade.publish import BearerTransport, Publisher, PublishError, SinkAnswer, TokenFile
from cascade.settings import Settings, SettingsError
from cascade.testing import EventResult, FunctionClient
from tests.issuer_server import IssuerServer

AUDIENCE = "serving.knative.dev/service/default/probe"
SUBJECT = "system:serviceaccount:default:probe-oidc-eventing.knative.dev-trigger"
EVENT = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-source": "/test",
    "ce-type": "com.example.probe.command",
    "Content-Type": "application/json",
}
BODY = b'{"action": "none"}'


@pytest.fixture
def issuer() -> Iterator[IssuerServer]:
    served = IssuerServer()
    with served.server:
        yield served


def bearer(token: str) -> dict[str, str]:
    return {**EVENT, "Authorization": f"Bearer {token}"}


def guarded(
    probe: ModuleType, tmp_path: Path, issuer: IssuerServer, **extra: Any
) -> FunctionClient:
    options: dict[str, Any] = {
        "oidc_audience": AUDIENCE,
        "oidc_issuer": issuer.issuer.url,
        "oidc_allowed_subjects": ("system:serviceaccount:default:probe-*",),
    }
    options.update(extra)
    return FunctionClient(probe.fn, Settings(data_dir=tmp_path, **options))


def refused(result: EventResult, status: int, reason: str) -> None:
    assert result.status == status, result.body
    problem = result.problem
    assert problem is not None
    assert problem["reason"] == reason
    assert result.headers["WWW-Authenticate"].startswith("Bearer")


def test_good_token_reaches_the_handler(
    probe: ModuleType, tmp_path: Path, issuer: IssuerServer
) -> None:
    with guarded(probe, tmp_path, issuer) as client:
        result = client.post(bearer(issuer.issuer.token(SUBJECT, AUDIENCE)), BODY)
    assert result.status == 204


def test_missing_token_is_401_without_an_error_code(
    probe: ModuleType, tmp_path: Path, issuer: IssuerServer
) -> None:
    with guarded(probe, tmp_path, issuer) as client:
        result = client.post(EVENT, BODY)
        refused(result, 401, "missing")
        assert result.headers["WWW-Authenticate"] == 'Bearer realm="cascade"'
        assert (
            client.metric(
                "cascade_sender_refusals_total", {"function": "probe", "reason": "missing"}
            )
            == 1
        )


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda i: i.sign(SUBJECT, "serving.knative.dev/service/default/other"), "audience"),
        (lambda i: i.sign(SUBJECT, AUDIENCE, exp=int(time.time()) - 3600), "expired"),
        (lambda i: i.sign(SUBJECT, AUDIENCE, nbf=int(time.time()) + 3600), "not_yet_valid"),
        (lambda i: i.sign(SUBJECT, AUDIENCE, iss="https://elsewhere.example"), "issuer"),
        (lambda i: i.sign(SUBJECT, AUDIENCE)[:-6] + "AAAAAA", "signature"),
        (lambda i: LocalIssuer(i.url).sign(SUBJECT, AUDIENCE), "unknown_key"),
        (lambda i: jwt.encode({"sub": SUBJECT, "aud": AUDIENCE}, "k" * 32, "HS256"), "algorithm"),
        (lambda i: jwt.encode({"sub": SUBJECT, "aud": AUDIENCE}, None, "none"), "algorithm"),
        (lambda i: "not-a-jwt", "malformed"),
    ],
    ids=["audience", "expired", "nbf", "issuer", "signature", "kid", "hs256", "none", "garbage"],
)
def test_bad_tokens_are_401(
    probe: ModuleType, tmp_path: Path, issuer: IssuerServer, make_token: Any, reason: str
) -> None:
    with guarded(probe, tmp_path, issuer) as client:
        result = client.post(bearer(make_token(issuer.issuer)), BODY)
        refused(result, 401, reason)
        assert 'error="invalid_token"' in result.headers["WWW-Authenticate"]


def test_a_token_from_a_key_with_the_right_kid_but_another_secret_fails(
    probe: ModuleType, tmp_path: Path, issuer: IssuerServer
) -> None:
    forger = LocalIssuer(issuer.issuer.url)
    forger.kid = issuer.issuer.kid  # claims the real key's id, signs with its own key
    with guarded(probe, tmp_path, issuer) as client:
        refused(client.post(bearer(forger.sign(SUBJECT, AUDIENCE)), BODY), 401, "signature")


def test_subject_not_allowed_is_403(
    probe: ModuleType, tmp_path: Path, issuer: IssuerServer
) -> None:
    stranger = "system:serviceaccount:default:mallory"
    with guarded(probe, tmp_path, issuer) as client:
        result = client.post(bearer(issuer.issuer.token(stranger, AUDIENCE)), BODY)
    refused(result, 403, "subject")
    assert 'error="insufficient_scope"' in result.headers["WWW-Authenticate"]


def test_health_and_metrics_stay_open(
    probe: ModuleType, tmp_path: Path, issuer: IssuerServer
) -> None:
    with guarded(probe, tmp_path, issuer) as client:
        for path in ("/health/liveness", "/health/readiness", "/metrics"):
            assert client.get(path).status == 200


def test_unreachable_keys_answer_503_so_the_sender_retries(
    probe: ModuleType, tmp_path: Path, issuer: IssuerServer
) -> None:
    issuer.down = True
    with guarded(probe, tmp_path, issuer) as client:
        result = client.post(bearer(issuer.issuer.token(SUBJECT, AUDIENCE)), BODY)
        assert result.status == 503
        assert result.headers["Retry-After"]
        issuer.down = False
        # The next delivery fetches the keys again and goes through.
        assert client.post(bearer(issuer.issuer.token(SUBJECT, AUDIENCE)), BODY).status == 204


def test_keys_are_fetched_once_and_forged_kids_do_not_refetch(issuer: IssuerServer) -> None:
    verifier = SenderVerifier(audience=AUDIENCE, jwks_url=issuer.issuer.jwks_url)
    good = issuer.issuer.sign(SUBJECT, AUDIENCE)
    assert verifier.check(f"Bearer {good}") is None
    stranger = LocalIssuer("http://127.0.0.1:1")
    for n in range(20):
        stranger.kid = f"forged-{n}"
        forged = stranger.sign(SUBJECT, AUDIENCE)
        refusal = verifier.check(f"Bearer {forged}")
        assert refusal is not None
        assert refusal.reason == "unknown_key"
    assert issuer.fetches == 1  # within the cool-down an unknown kid costs no fetch


def test_a_verified_token_is_not_verified_again(issuer: IssuerServer) -> None:
    verifier = SenderVerifier(audience=AUDIENCE, jwks_url=issuer.issuer.jwks_url)
    token = issuer.issuer.token(SUBJECT, AUDIENCE)
    assert issuer.issuer.token(SUBJECT, AUDIENCE) == token  # the issuer reuses it while fresh
    calls = 0
    real_decode = jwt.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real_decode(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jwt, "decode", counting)
        for _ in range(5):
            assert verifier.check(f"Bearer {token}") is None
    assert calls == 1


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=300))
def test_any_authorization_value_gets_a_clear_4xx(issuer: IssuerServer, value: str) -> None:
    verifier = SenderVerifier(audience=AUDIENCE, jwks_url=issuer.issuer.jwks_url)
    refusal = verifier.check(value)
    assert refusal is not None
    assert refusal.status == 401


def test_subject_patterns_follow_event_policy_from_sub() -> None:
    assert subject_allowed("anyone", ())
    assert subject_allowed("system:serviceaccount:ns:a", ("system:serviceaccount:ns:*",))
    assert subject_allowed("x", ("y", "x"))
    assert not subject_allowed("system:serviceaccount:other:a", ("system:serviceaccount:ns:*",))
    assert not subject_allowed("xy", ("x",))


def test_trigger_subjects_are_named_as_knative_names_them() -> None:
    assert trigger_subject("shop", "inventory-order-created") == (
        "system:serviceaccount:shop:inventory-order-created-oidc-eventing.knative.dev-trigger"
    )
    long_name = "a-trigger-name-long-enough-to-be-hashed-by-kmeta"
    name = knative_child_name(long_name, "-oidc-eventing.knative.dev-trigger")
    assert len(name) == 63
    assert name.startswith(long_name[:31])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CASCADE_OIDC_AUDIENCE": "a"}, "CASCADE_OIDC_ISSUER"),
        ({"CASCADE_OIDC_ISSUER": "http://127.0.0.1:1"}, "CASCADE_OIDC_AUDIENCE"),
        ({"CASCADE_OIDC_AUDIENCE": "a", "CASCADE_OIDC_JWKS_URL": "file:///etc/passwd"}, "http"),
        (
            {
                "CASCADE_OIDC_AUDIENCE": "a",
                "CASCADE_OIDC_ISSUER": "http://x",
                "CASCADE_OIDC_LEEWAY": "-1",
            },
            "CASCADE_OIDC_LEEWAY",
        ),
    ],
)
def test_incomplete_settings_fail_at_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_allowed_subjects_are_read_as_a_comma_list() -> None:
    env = {
        "CASCADE_OIDC_AUDIENCE": "a",
        "CASCADE_OIDC_JWKS_URL": "http://127.0.0.1:1/jwks",
        "CASCADE_OIDC_ALLOWED_SUBJECTS": " x , y* ,,",
    }
    assert Settings.from_env(env).oidc_allowed_subjects == ("x", "y*")


def test_publishing_presents_the_token_file_read_again_when_it_changes(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    seen: list[str] = []

    class Recording:
        def post(self, url: str, headers: Any, body: bytes, timeout: float) -> SinkAnswer:
            seen.append(headers["Authorization"])
            return SinkAnswer(202, {}, b"")

        def close(self) -> None:
            pass

    transport = BearerTransport(Recording(), TokenFile(token_file))
    transport.post("http://sink", {}, b"", 1.0)
    token_file.write_text("second-and-longer")  # a rotation, as the kubelet does
    transport.post("http://sink", {}, b"", 1.0)
    assert seen == ["Bearer first", "Bearer second-and-longer"]
    token_file.unlink()
    with pytest.raises(PublishError, match="no token to publish with"):
        transport.post("http://sink", {}, b"", 1.0)


def test_publisher_from_settings_uses_the_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t")
    settings = Settings(
        data_dir=tmp_path, sink="http://127.0.0.1:1/", publish_token_file=token_file
    )
    with Publisher.from_settings(settings, "/probe") as publisher:
        assert isinstance(publisher.transport, BearerTransport)

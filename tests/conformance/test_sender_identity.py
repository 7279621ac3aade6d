"""`cascade broker --oidc`: tokens on every delivery, dead letter and reply; EventPolicies enforced.

Knative's authentication-oidc and authorization features, reproduced by the local broker: the
dispatcher sends a token in the Trigger's name for the destination's audience; the ingress and the
reply path admit a sender only as the EventPolicies for the Broker (or the default mode) say.
"""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest

from cascade.broker.oidc import issuer_key_path
from cascade.identity import SenderVerifier
from cascade.issuer import LocalIssuer, trigger_subject
from tests.conformance.conftest import StartBroker
from tests.conformance.harness import (
    Answer,
    BrokerProcess,
    Received,
    Subscriber,
    broker_manifest,
    ce_headers,
    request,
    service_manifest,
    trigger_manifest,
    write_manifests,
)

NS = "conformance"
BROKER_AUDIENCE = f"eventing.knative.dev/broker/{NS}/default"
SAME_NS = f"system:serviceaccount:{NS}:producer"


def with_audience(trigger: dict[str, Any], audience: str) -> dict[str, Any]:
    trigger["spec"]["subscriber"]["audience"] = audience
    return trigger


def event_policy(name: str, subjects: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "EventPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "to": [
                {
                    "ref": {
                        "apiVersion": "eventing.knative.dev/v1",
                        "kind": "Broker",
                        "name": "default",
                    }
                }
            ],
            "from": [{"sub": s} for s in subjects],
            **spec,
        },
    }


def issuer_of(broker: BrokerProcess) -> LocalIssuer:
    """The broker's own key, read from its data dir, as `cascade send --oidc` does."""
    url = f"http://127.0.0.1:{broker.port}/-/oidc"
    return LocalIssuer.from_key_file(url, issuer_key_path(broker.data_dir))


def post(broker: BrokerProcess, token: str | None, event_type: str = "com.example.test") -> int:
    headers = ce_headers(str(uuid.uuid4()), event_type)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return broker.send(headers).status


def claims(received: Received, broker: BrokerProcess, audience: str) -> dict[str, Any]:
    authorization = received.headers.get("authorization", "")
    assert authorization.startswith("Bearer "), received.headers
    verifier = SenderVerifier(
        audience=audience, issuer=f"http://127.0.0.1:{broker.port}/-/oidc"
    )  # discovery and JWKS fetched over HTTP from the broker, as a function would
    assert verifier.check(authorization) is None
    decoded: dict[str, Any] = jwt.decode(authorization[7:], options={"verify_signature": False})
    return decoded


@pytest.fixture(scope="module")
def chain(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    subscriber.program("/fails", then=Answer(500))
    objects = [
        broker_manifest(),
        with_audience(
            trigger_manifest(
                "with-audience",
                subscriber.url("/aud"),
                filter_attributes={"type": "com.example.test"},
            ),
            "aud-x",
        ),
        trigger_manifest(
            "bare-uri", subscriber.url("/bare"), filter_attributes={"type": "com.example.test"}
        ),
        service_manifest("svc", subscriber.url("/svc")),
        trigger_manifest(
            "by-ref", "", subscriber_ref="svc", filter_attributes={"type": "com.example.test"}
        ),
        trigger_manifest(
            "failing",
            "",
            subscriber_ref="svc",
            filter_attributes={"type": "com.example.fails"},
            delivery={
                "retry": 0,
                "deadLetterSink": {"uri": subscriber.url("/dls"), "audience": "dls-aud"},
            },
        ),
    ]
    objects[-1]["spec"]["subscriber"]["uri"] = "/fails"
    return start_broker(objects, args=["--oidc"])


def test_the_broker_serves_an_issuer_and_keeps_its_key_private(chain: BrokerProcess) -> None:
    base = "/-/oidc/.well-known"
    discovery = json.loads(request(chain.port, "GET", f"{base}/openid-configuration").body)
    assert discovery["issuer"] == f"http://127.0.0.1:{chain.port}/-/oidc"
    keys = json.loads(request(chain.port, "GET", f"{base}/jwks.json").body)["keys"]
    assert [key["kty"] for key in keys] == ["RSA"]
    assert "d" not in keys[0]  # the public half only
    mode = stat.S_IMODE(issuer_key_path(chain.data_dir).stat().st_mode)
    assert mode == 0o600


def test_deliveries_carry_a_token_in_the_triggers_name(
    chain: BrokerProcess, subscriber: Subscriber
) -> None:
    token = issuer_of(chain).token(SAME_NS, BROKER_AUDIENCE)
    assert post(chain, token) == 202
    with_audience_got = subscriber.wait_for("/aud", 1)[-1]
    decoded = claims(with_audience_got, chain, "aud-x")
    assert decoded["sub"] == trigger_subject(NS, "with-audience")
    by_ref = claims(
        subscriber.wait_for("/svc", 1)[-1], chain, f"serving.knative.dev/service/{NS}/svc"
    )
    assert by_ref["sub"] == trigger_subject(NS, "by-ref")
    # A bare URI announces no audience: Knative sends no token there.
    assert "authorization" not in subscriber.wait_for("/bare", 1)[-1].headers


def test_dead_letters_carry_a_token_for_the_sinks_audience(
    chain: BrokerProcess, subscriber: Subscriber
) -> None:
    assert post(chain, issuer_of(chain).token(SAME_NS, BROKER_AUDIENCE), "com.example.fails") == 202
    dead = subscriber.wait_for("/dls", 1)[-1]
    assert claims(dead, chain, "dls-aud")["sub"] == trigger_subject(NS, "failing")


@pytest.mark.parametrize(
    ("make_token", "status"),
    [
        (lambda issuer: None, 401),
        (lambda issuer: "garbage", 401),
        (lambda issuer: issuer.sign(SAME_NS, "eventing.knative.dev/broker/other/default"), 401),
        (lambda issuer: LocalIssuer(issuer.url).sign(SAME_NS, BROKER_AUDIENCE), 401),
        (lambda issuer: issuer.sign("system:serviceaccount:elsewhere:x", BROKER_AUDIENCE), 403),
        (lambda issuer: issuer.token(SAME_NS, BROKER_AUDIENCE), 202),
    ],
    ids=[
        "no-token",
        "garbage",
        "wrong-audience",
        "foreign-key",
        "other-namespace",
        "same-namespace",
    ],
)
def test_without_a_policy_the_default_mode_is_allow_same_namespace(
    chain: BrokerProcess, make_token: Any, status: int
) -> None:
    token = make_token(issuer_of(chain))
    answer = chain.send(
        {**ce_headers(str(uuid.uuid4())), **({"Authorization": f"Bearer {token}"} if token else {})}
    )
    assert answer.status == status, answer
    if status in (401, 403):
        assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture(scope="module")
def guarded(start_broker: StartBroker, subscriber: Subscriber) -> BrokerProcess:
    replier = trigger_subject(NS, "replier")
    objects = [
        broker_manifest(),
        event_policy(
            "orders-from-producer",
            [SAME_NS],
            filters=[{"prefix": {"type": "com.example.order."}}],
        ),
        event_policy("replies", [replier], filters=[{"exact": {"type": "com.example.allowed"}}]),
        trigger_manifest(
            "replier",
            subscriber.url("/replier"),
            filter_attributes={"type": "com.example.order.placed"},
            delivery={"retry": 0, "deadLetterSink": {"uri": subscriber.url("/guarded-dls")}},
        ),
        trigger_manifest(
            "replies", subscriber.url("/replies"), filter_attributes={"type": "com.example.allowed"}
        ),
    ]

    def answer(received: Received) -> Answer:
        reply_type = (
            "com.example.allowed" if received.ce.get("subject") == "ok" else "com.example.denied"
        )
        headers = {
            "ce-specversion": "1.0",
            "ce-id": received.ce["id"] + "-r",
            "ce-source": "/replier",
            "ce-type": reply_type,
        }
        return Answer(200, headers)

    subscriber.program("/replier", then=answer)
    return start_broker(objects, args=["--oidc"])


def test_event_policies_decide_who_sends_what(guarded: BrokerProcess) -> None:
    issuer = issuer_of(guarded)
    producer = issuer.token(SAME_NS, BROKER_AUDIENCE)
    stranger = issuer.token(f"system:serviceaccount:{NS}:stranger", BROKER_AUDIENCE)
    assert post(guarded, producer, "com.example.order.created") == 202
    assert post(guarded, producer, "com.example.payment.authorized") == 403  # filter says no
    assert post(guarded, stranger, "com.example.order.created") == 403  # from says no
    assert post(guarded, None, "com.example.order.created") == 401


def test_replies_enter_only_as_a_policy_allows_their_trigger(
    guarded: BrokerProcess, subscriber: Subscriber
) -> None:
    token = issuer_of(guarded).token(SAME_NS, BROKER_AUDIENCE)
    allowed = ce_headers("ok-1", "com.example.order.placed", subject="ok")
    allowed["Authorization"] = f"Bearer {token}"
    assert guarded.send(allowed).status == 202
    assert subscriber.wait_for("/replies", 1)[-1].ce["id"] == "ok-1-r"
    denied = ce_headers("no-1", "com.example.order.placed", subject="no")
    denied["Authorization"] = f"Bearer {token}"
    assert guarded.send(denied).status == 202
    dead = subscriber.wait_for("/guarded-dls", 1)[-1]
    assert dead.ce["id"] == "no-1"
    assert dead.ce["knativeerrordest"] == subscriber.url("/replier")
    assert "a reply the broker refuses (no EventPolicy" in guarded.output()
    assert [r.ce["id"] for r in subscriber.received("/replies")] == ["ok-1-r"]


def test_a_policy_the_local_broker_cannot_enforce_stops_startup(tmp_path: Path) -> None:
    policy = event_policy("by-label", [SAME_NS])
    policy["spec"]["to"] = [{"selector": {"matchLabels": {"app": "x"}}}]
    manifests = write_manifests(tmp_path / "m.yaml", [broker_manifest(), policy])
    broker = BrokerProcess(manifests, tmp_path, args=["--oidc"])
    broker.start(wait=False)
    assert broker.process is not None
    assert broker.process.wait(30) == 2
    assert "spec.to[0].selector" in broker.output()


def test_the_key_survives_a_restart(start_broker: StartBroker, tmp_path: Path) -> None:
    first = start_broker([broker_manifest()], args=["--oidc"], workdir=tmp_path)
    kid = issuer_of(first).kid
    first.stop()
    second = BrokerProcess(first.manifests, tmp_path, args=["--oidc"])
    second.start()
    try:
        keys = json.loads(request(second.port, "GET", "/-/oidc/.well-known/jwks.json").body)
        assert keys["keys"][0]["kid"] == kid
    finally:
        second.stop()

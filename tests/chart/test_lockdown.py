"""The locked-down cluster (issue 11 items 3-5, issue 10 item 8): what each render contains for
sender identity (OIDC), Kafka's TLS + SCRAM login, the public routes and the admin routes, and
that bad values for them are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cascade.issuer import trigger_subject
from tests.chart.support import CHART, documents, helm_error, named, of_kind, render_documents
from tests.functions.conftest import load

NAMESPACE = "default"


def _env(service: dict[str, Any]) -> dict[str, Any]:
    container = service["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _services(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return named(of_kind(docs, "Service", "serving.knative.dev"))


def _audience(function: str) -> str:
    return f"serving.knative.dev/service/{NAMESPACE}/{function}"


# ---------------------------------------------------------------------------- sender identity


@pytest.fixture(scope="module")
def oidc_docs(renders: dict[str, str]) -> list[dict[str, Any]]:
    return documents(renders["oidc"])


def test_without_oidc_nothing_of_it_is_rendered(default_docs: list[dict[str, Any]]) -> None:
    assert of_kind(default_docs, "EventPolicy") == []
    for trigger in of_kind(default_docs, "Trigger"):
        assert "audience" not in trigger["spec"]["subscriber"]
        assert "audience" not in trigger["spec"]["delivery"]["deadLetterSink"]
    for service in _services(default_docs).values():
        assert not [k for k in _env(service) if k.startswith("CASCADE_OIDC_")]
        assert "CASCADE_PUBLISH_TOKEN_FILE" not in _env(service)
        assert "SSL_CERT_FILE" not in _env(service)


def test_each_trigger_names_its_subscribers_audience(oidc_docs: list[dict[str, Any]]) -> None:
    triggers = of_kind(oidc_docs, "Trigger")
    assert len(triggers) == 12
    for trigger in triggers:
        spec = trigger["spec"]
        assert spec["subscriber"]["audience"] == _audience(spec["subscriber"]["ref"]["name"])
        assert spec["delivery"]["deadLetterSink"]["audience"] == _audience("dead-letter")
    [broker] = of_kind(oidc_docs, "Broker")
    assert broker["spec"]["delivery"]["deadLetterSink"]["audience"] == _audience("dead-letter")


def test_each_function_accepts_only_its_own_triggers(oidc_docs: list[dict[str, Any]]) -> None:
    triggers = of_kind(oidc_docs, "Trigger")
    by_function: dict[str, set[str]] = {}
    for trigger in triggers:
        function = trigger["spec"]["subscriber"]["ref"]["name"]
        by_function.setdefault(function, set()).add(trigger["metadata"]["name"])
    every = {t["metadata"]["name"] for t in triggers}
    for name, service in _services(oidc_docs).items():
        env = _env(service)
        assert env["CASCADE_OIDC_AUDIENCE"] == _audience(name)
        assert env["CASCADE_OIDC_ISSUER"] == "https://kubernetes.default.svc.cluster.local"
        assert env["CASCADE_OIDC_JWKS_URL"] == (
            "https://kubernetes.default.svc.cluster.local/openid/v1/jwks"
        )
        # read the way the runtime reads it (comma list, items stripped)
        allowed = {s.strip() for s in env["CASCADE_OIDC_ALLOWED_SUBJECTS"].split(",")}
        # the dead-letter sink also takes every Trigger's dead letters
        senders = every if name == "dead-letter" else by_function[name]
        # the subject the local broker's issuer signs for a Trigger, Knative's naming
        assert allowed == {trigger_subject(NAMESPACE, t) for t in senders}, name
        assert env["SSL_CERT_FILE"] == "/var/run/cascade/oidc-ca/ca.crt"
        # a publisher sends the token its SinkBinding mounts (for the Broker's audience)
        publishes = name in {"order"}
        assert env.get("CASCADE_PUBLISH_TOKEN_FILE") == ("/oidc/token" if publishes else None)
        spec = service["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["oidc-ca"]["configMap"] == {
            "name": "kube-root-ca.crt",
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["oidc-ca"] == {
            "name": "oidc-ca",
            "mountPath": "/var/run/cascade/oidc-ca",
            "readOnly": True,
        }


def test_event_policies_let_only_the_chain_send(oidc_docs: list[dict[str, Any]]) -> None:
    policies = named(of_kind(oidc_docs, "EventPolicy", "eventing.knative.dev"))
    to_broker = {n: p for n, p in policies.items() if p["spec"]["to"][0]["ref"]["kind"] == "Broker"}
    assert sorted(to_broker) == [
        "inventory-replies",
        "order-publishes",
        "order-replies",
        "payment-replies",
    ]
    # the order API's own identity (its SinkBinding), for the order.* types only
    publishes = to_broker["order-publishes"]["spec"]
    assert publishes["from"] == [
        {
            "ref": {
                "apiVersion": "sources.knative.dev/v1",
                "kind": "SinkBinding",
                "name": "order-to-shop",
                "namespace": NAMESPACE,
            }
        }
    ]
    [published] = publishes["filters"]
    assert {f["exact"]["type"] for f in published["any"]} == {
        "com.example.shop.order.created",
        "com.example.shop.order.confirmed",
        "com.example.shop.order.cancelled",
    }
    services = _services(oidc_docs)
    triggers = of_kind(oidc_docs, "Trigger")
    for function in ("inventory", "order", "payment"):
        spec = to_broker[f"{function}-replies"]["spec"]
        own = {
            t["metadata"]["name"]
            for t in triggers
            if t["spec"]["subscriber"]["ref"]["name"] == function
        }
        assert {f["ref"]["name"] for f in spec["from"]} == own
        assert {f["ref"]["kind"] for f in spec["from"]} == {"Trigger"}
        [replies] = spec["filters"]
        declared = services[function]["metadata"]["annotations"]["cascade.dev/reply-types"]
        assert {f["exact"]["type"] for f in replies["any"]} == set(declared.split(","))
    # no policy names a function: the function enforces its senders itself
    assert all(p["spec"]["to"][0]["ref"]["kind"] == "Broker" for p in policies.values())


def test_oidc_lets_functions_reach_the_api_servers_keys(oidc_docs: list[dict[str, Any]]) -> None:
    policy = named(of_kind(oidc_docs, "NetworkPolicy"))["cascade-functions"]
    api = [r for r in policy["spec"]["egress"] if any("ipBlock" in p for p in r.get("to", []))]
    assert api == [
        {
            "ports": [{"protocol": "TCP", "port": 6443}],
            "to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}],
        }
    ]


# ---------------------------------------------------------------------------- Kafka login


def test_strimzi_listens_only_with_tls_and_scram(default_docs: list[dict[str, Any]]) -> None:
    [kafka] = of_kind(default_docs, "Kafka")
    [listener] = kafka["spec"]["kafka"]["listeners"]
    assert listener == {
        "name": "tls",
        "port": 9093,
        "type": "internal",
        "tls": True,
        "authentication": {"type": "scram-sha-512"},
        "networkPolicyPeers": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "knative-eventing"}
                }
            }
        ],
    }
    assert kafka["spec"]["entityOperator"] == {"userOperator": {}}
    [user] = of_kind(default_docs, "KafkaUser")
    assert user["metadata"]["name"] == "shop-knative-broker"
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == "cascade"
    assert user["spec"] == {"authentication": {"type": "scram-sha-512"}}
    config = named(of_kind(default_docs, "ConfigMap"))["shop-kafka-broker-config"]["data"]
    assert config["bootstrap.servers"].endswith(":9093")
    assert config["auth.secret.ref.name"] == "shop-kafka-auth"
    # install.sh assembles that Secret from the KafkaUser's (and the CA's) Secrets
    script = (CHART.parents[1] / "k8s" / "install.sh").read_text(encoding="utf-8")
    assert "kafka_auth_secret" in script


def test_an_insecure_strimzi_or_an_external_kafka_has_no_login(
    renders: dict[str, str], tools: Path
) -> None:
    docs = render_documents(set_values=["kafka.strimzi.secure=false"])
    [kafka] = of_kind(docs, "Kafka")
    assert [listener["port"] for listener in kafka["spec"]["kafka"]["listeners"]] == [9092]
    assert of_kind(docs, "KafkaUser") == []
    config = named(of_kind(docs, "ConfigMap"))["shop-kafka-broker-config"]["data"]
    assert "auth.secret.ref.name" not in config
    external = documents(renders["external-kafka"])
    assert of_kind(external, "KafkaUser") == []
    config = named(of_kind(external, "ConfigMap"))["shop-kafka-broker-config"]["data"]
    assert "auth.secret.ref.name" not in config
    docs = render_documents(
        set_values=[
            "kafka.strimzi.enabled=false",
            "kafka.bootstrapServers=kafka.example:9093",
            "kafka.authSecretName=my-kafka-login",
        ]
    )
    config = named(of_kind(docs, "ConfigMap"))["shop-kafka-broker-config"]["data"]
    assert config["auth.secret.ref.name"] == "my-kafka-login"


# ---------------------------------------------------------------------------- public routes


def test_only_the_order_apis_two_routes_are_public(default_docs: list[dict[str, Any]]) -> None:
    [ingress] = of_kind(default_docs, "Ingress", "networking.internal.knative.dev")
    assert ingress["metadata"]["annotations"] == {
        "networking.knative.dev/ingress.class": "kourier.ingress.networking.knative.dev"
    }
    [rule] = ingress["spec"]["rules"]
    assert rule["hosts"] == ["order.default.127.0.0.1.sslip.io"]
    assert rule["visibility"] == "ExternalIP"
    routes = {(p["headers"][":method"]["exact"], p["path"]) for p in rule["http"]["paths"]}
    assert routes == {("POST", "/orders"), ("GET", "/orders/")}
    for path in rule["http"]["paths"]:
        assert path["rewriteHost"] == "order.default.svc.cluster.local"
        assert path["splits"] == [
            {
                "serviceName": "order",
                "serviceNamespace": "default",
                "servicePort": 80,
                "percent": 100,
            }
        ]
    # what of the order function those prefixes reach, with its admin routes off (the chart
    # never turns them on): exactly POST /orders and GET /orders/<id>; its CloudEvents
    # endpoint, /outbox and /metrics are under no public prefix
    function = load("order").fn
    reachable = {
        (method, route.rule)
        for route in function.routes
        if not route.admin
        for method in route.methods
        for public_method, prefix in routes
        if method == public_method and route.rule.startswith(prefix)
    }
    assert reachable == {("POST", "/orders"), ("GET", "/orders/<order_id>")}
    assert not any("/".startswith(prefix) for _, prefix in routes)


def test_without_public_routes_the_whole_service_is_public(tools: Path) -> None:
    docs = render_documents(set_values=["functions.order.publicRoutes=null"])
    assert of_kind(docs, "Ingress", "networking.internal.knative.dev") == []
    labels = _services(docs)["order"]["metadata"]["labels"]
    assert "networking.knative.dev/visibility" not in labels


def test_the_chart_enables_no_admin_routes(renders: dict[str, str], tools: Path) -> None:
    for case, text in renders.items():
        for name, service in _services(documents(text)).items():
            assert "CASCADE_ADMIN_ROUTES" not in _env(service), (case, name)
    docs = render_documents(set_values=["functions.payment.adminRoutes=true"])
    envs = {name: _env(s) for name, s in _services(docs).items()}
    assert envs.pop("payment")["CASCADE_ADMIN_ROUTES"] == "true"
    assert all("CASCADE_ADMIN_ROUTES" not in env for env in envs.values())


def test_no_pod_mounts_a_service_account_token(renders: dict[str, str]) -> None:
    for case, text in renders.items():
        docs = documents(text)
        for service in _services(docs).values():
            assert service["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
        for pod in of_kind(docs, "Pod"):
            assert pod["spec"]["automountServiceAccountToken"] is False, case


# ---------------------------------------------------------------------------- refused values

REFUSED = [
    (["security.oidc.enabled=yes"], "security.oidc.enabled: Invalid type"),
    (["security.oidc.jwksUrl=ftp://keys"], "security.oidc.jwksUrl: Does not match pattern"),
    (["security.oidc.bogus=1"], "security.oidc: Additional property bogus is not allowed"),
    (["networkPolicy.apiServer.cidrs={nope}"], "networkPolicy.apiServer.cidrs.0"),
    (["networkPolicy.defaultDeny=sometimes"], "networkPolicy.defaultDeny: Invalid type"),
    (["kafka.strimzi.secure=maybe"], "kafka.strimzi.secure: Invalid type"),
    (["kafka.authSecretName=Bad_Name"], "kafka.authSecretName: Does not match pattern"),
    (["functionDefaults.adminRoutes=on"], "functionDefaults.adminRoutes: Invalid type"),
    (
        ["functions.order.publicRoutes[0].method=TRACE"],
        "functions.order.publicRoutes.0.method must be one of",
    ),
    (["functions.order.publicRoutes[0].path=orders"], "publicRoutes.0.path: Does not match"),
    (
        ["functions.order.env.CASCADE_ADMIN_ROUTES=true"],
        "functions.order.env.CASCADE_ADMIN_ROUTES: set by the chart itself",
    ),
    (
        ["functions.order.env.CASCADE_OIDC_ALLOWED_SUBJECTS=*"],
        "functions.order.env.CASCADE_OIDC_ALLOWED_SUBJECTS: set by the chart itself",
    ),
    (
        ["security.oidc.enabled=true", "sink.mode=env"],
        "security.oidc.enabled: needs sink.mode=sinkBinding",
    ),
    (
        [
            "security.oidc.enabled=true",
            "functions.order.consumes.payment-authorized-too-late.type=t",
        ],
        "functions.order.consumes.payment-authorized-too-late: with security.oidc.enabled "
        "a Trigger name may have at most 29 characters",
    ),
]


@pytest.mark.parametrize(("assignments", "message"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_bad_lockdown_values_are_refused(tools: Path, assignments: list[str], message: str) -> None:
    args = ["template", "x", str(CHART)]
    for assignment in assignments:
        args += ["--set", assignment]
    assert message in helm_error(*args)

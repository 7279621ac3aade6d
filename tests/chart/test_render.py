"""`helm lint --strict` and the render matrix (ci/*-values.yaml): every object of every render is
checked by a schema (core kinds by kubernetes-validate at the cluster's version, custom kinds by
their CRD models), by Knative's webhook rules, and by our own cross-object checks; the local
broker loads every render."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from cascade.broker.topology import load_topology
from tests.chart.nats_channel import channel_template_problems
from tests.chart.rules import knative_service_problems, reference_problems
from tests.chart.support import (
    CHART,
    CI_VALUES,
    core_problems,
    custom_validation,
    documents,
    helm,
    named,
    of_kind,
    render_documents,
)

CASES = [path.name.removesuffix("-values.yaml") for path in CI_VALUES]
YAMLLINT = YamlLintConfig(file=str(Path(__file__).with_name("yamllint.yaml")))
SHOP = ("dead-letter", "inventory", "notification", "order", "payment")

# The SinkBinding model marks `status` required, which no manifest carries (the API server
# fills it in); that one error is the model's, not ours.
MODEL_QUIRKS = {"SinkBinding": ["/: must have required property status"]}


def test_the_render_matrix_cases() -> None:
    """Defaults, an external Kafka, NATS JetStream, no observability, OIDC, a user's function."""
    assert set(CASES) == {
        "default",
        "external-kafka",
        "nats",
        "no-observability",
        "oidc",
        "user-function",
    }


@pytest.mark.parametrize("values", CI_VALUES, ids=CASES)
def test_helm_lint_strict_passes(tools: Path, values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize("case", CASES)
def test_every_object_passes_its_schema(renders: dict[str, str], case: str) -> None:
    docs = documents(renders[case])
    results = custom_validation(docs)
    core = custom = 0
    for doc, result in zip(docs, results, strict=True):
        label = f"{doc['kind']} {doc['metadata']['name']}"
        if result["status"] == "unknown":
            problems = core_problems(doc)
            assert problems is not None, f"{label}: no schema validates {doc['apiVersion']}"
            assert problems == [], f"{label}: {problems}"
            core += 1
        else:
            errors = [
                e for e in result.get("errors", []) if e not in MODEL_QUIRKS.get(doc["kind"], [])
            ]
            assert errors == [], f"{label} ({result['model']}): {errors}"
            custom += 1
    assert core >= 3, core
    assert custom >= 10, custom


def test_the_crd_validator_finds_type_errors(default_docs: list[dict[str, Any]]) -> None:
    trigger = copy.deepcopy(of_kind(default_docs, "Trigger")[0])
    trigger["spec"]["delivery"]["retry"] = "five"
    service = copy.deepcopy(of_kind(default_docs, "Service", "serving.knative.dev")[0])
    service["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    results = custom_validation([trigger, service])
    assert results[0]["status"] == "invalid"
    assert "/spec/delivery/retry: must be integer" in results[0]["errors"]
    assert any("containerPort: must be integer" in e for e in results[1]["errors"])


def test_the_core_validator_refuses_unknown_fields(default_docs: list[dict[str, Any]]) -> None:
    policy = copy.deepcopy(of_kind(default_docs, "NetworkPolicy")[0])
    assert core_problems(policy) == []
    policy["spec"]["egres"] = []
    problems = core_problems(policy)
    assert problems
    assert "'egres' was unexpected" in problems[0]


@pytest.mark.parametrize("case", CASES)
def test_knative_services_pass_the_serving_webhook_rules(
    renders: dict[str, str], case: str
) -> None:
    services = of_kind(documents(renders[case]), "Service", "serving.knative.dev")
    assert services
    for service in services:
        assert knative_service_problems(service) == []


def test_the_webhook_rules_find_what_knative_refuses(default_docs: list[dict[str, Any]]) -> None:
    service = copy.deepcopy(of_kind(default_docs, "Service", "serving.knative.dev")[0])
    spec = service["spec"]["template"]["spec"]
    spec["securityContext"] = {"runAsNonRoot": True}
    spec["initContainers"] = []
    spec["containers"][0]["env"].append({"name": "PORT", "value": "9000"})
    spec["containers"][0]["volumeMounts"].append({"name": "x", "mountPath": "/dev"})
    spec["volumes"].append({"name": "x", "hostPath": {"path": "/"}})
    problems = "\n".join(knative_service_problems(service))
    for expected in (
        "spec.template.spec.securityContext is not allowed",
        "spec.template.spec.initContainers is not allowed",
        "env PORT is reserved",
        "mountPath /dev is reserved",
        "volume x: ['hostPath'] not allowed",
    ):
        assert expected in problems


@pytest.mark.parametrize("case", CASES)
def test_every_reference_resolves_within_the_render(renders: dict[str, str], case: str) -> None:
    assert reference_problems(documents(renders[case])) == []


def test_the_reference_check_finds_dangling_names(default_docs: list[dict[str, Any]]) -> None:
    docs = copy.deepcopy(default_docs)
    trigger = of_kind(docs, "Trigger")[0]
    trigger["spec"]["subscriber"]["ref"]["name"] = "nobody"
    broker = of_kind(docs, "Broker")[0]
    del broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"]
    pool = of_kind(docs, "KafkaNodePool")[0]
    pool["metadata"]["labels"]["strimzi.io/cluster"] = "other"
    problems = "\n".join(reference_problems(docs))
    assert f"Trigger {trigger['metadata']['name']}: spec.subscriber: Service 'nobody'" in problems
    assert "Broker shop: eventing.knative.dev/broker.class must be Kafka" in problems
    assert "strimzi.io/cluster 'other' is not in the render" in problems


@pytest.mark.parametrize("case", CASES)
def test_the_local_broker_loads_every_render(
    renders: dict[str, str], case: str, tmp_path: Path
) -> None:
    manifest = tmp_path / f"{case}.yaml"
    manifest.write_text(renders[case], encoding="utf-8")
    docs = documents(renders[case])
    names = list(named(of_kind(docs, "Service", "serving.knative.dev")))
    urls = {("default", n): f"http://127.0.0.1:{9200 + i}" for i, n in enumerate(names)}
    topology = load_topology([manifest], service_urls=urls)
    assert len(topology.triggers) == len(of_kind(docs, "Trigger"))
    # with OIDC the Triggers name their subscribers' audiences, which the local broker does not
    # use yet (it signs no tokens): it says so instead of refusing them
    audience_ignored = " is ignored by the local broker"
    notices = [
        n
        for n in topology.notices
        if not n.startswith("ignored kind")
        and not (case == "oidc" and n.endswith(".audience" + audience_ignored))
    ]
    if case == "nats":
        # Said, not hidden: locally the channel-based Broker runs with Kafka-class semantics.
        assert notices == [
            f"{manifest}: Broker default/shop: class 'MTChannelBasedBroker' is not emulated; "
            "Kafka class semantics are used"
        ]
    else:
        assert notices == []


@pytest.mark.parametrize("case", CASES)
def test_every_render_is_clean_yaml(renders: dict[str, str], case: str) -> None:
    problems = list(linter.run(renders[case], YAMLLINT))
    assert problems == [], [str(p) for p in problems]


# ------------------------------------------------------------------ what each case renders


def test_defaults_render_the_shop(default_docs: list[dict[str, Any]]) -> None:
    services = named(of_kind(default_docs, "Service", "serving.knative.dev"))
    assert sorted(services) == sorted(SHOP)
    images = {
        n: s["spec"]["template"]["spec"]["containers"][0]["image"] for n, s in services.items()
    }
    assert images == {n: f"cascade-{n}:0.1.0" for n in SHOP}
    # every Service is cluster-local; only the order API's two routes are published
    assert all(
        s["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
        for s in services.values()
    )
    [ingress] = of_kind(default_docs, "Ingress", "networking.internal.knative.dev")
    assert ingress["metadata"]["name"] == "order-public"
    assert [b["metadata"]["name"] for b in of_kind(default_docs, "SinkBinding")] == [
        "order-to-shop"
    ]
    assert len(of_kind(default_docs, "Trigger")) == 12
    assert len(of_kind(default_docs, "Kafka")) == len(of_kind(default_docs, "KafkaNodePool")) == 1
    config = named(of_kind(default_docs, "ConfigMap"))["shop-kafka-broker-config"]
    assert config["data"]["bootstrap.servers"] == (
        "cascade-kafka-bootstrap.default.svc.cluster.local:9093"
    )
    assert config["data"]["auth.secret.ref.name"] == "shop-kafka-auth"


def test_external_kafka_renders_no_strimzi_objects(renders: dict[str, str]) -> None:
    docs = documents(renders["external-kafka"])
    assert of_kind(docs, "Kafka") == []
    assert of_kind(docs, "KafkaNodePool") == []
    config = named(of_kind(docs, "ConfigMap"))["shop-kafka-broker-config"]
    assert config["data"] == {
        "bootstrap.servers": "my-kafka-kafka-bootstrap.kafka.svc.cluster.local:9092,"
        "my-kafka-kafka-1.kafka.svc.cluster.local:9092",
        "default.topic.partitions": "12",
        "default.topic.replication.factor": "3",
    }


def test_no_observability_renders_no_telemetry_wiring(renders: dict[str, str]) -> None:
    docs = documents(renders["no-observability"])
    assert of_kind(docs, "PodMonitor") == []
    assert of_kind(docs, "PrometheusRule") == []
    assert "cascade-dashboards" not in named(of_kind(docs, "ConfigMap"))
    for service in of_kind(docs, "Service", "serving.knative.dev"):
        env = service["spec"]["template"]["spec"]["containers"][0]["env"]
        assert not [e["name"] for e in env if e["name"].startswith("OTEL_")]
    policy = named(of_kind(docs, "NetworkPolicy"))["cascade-functions"]
    text = json.dumps(policy)
    assert "observability" not in text
    assert "monitoring" not in text


def test_a_user_function_gets_its_service_and_filtered_trigger(renders: dict[str, str]) -> None:
    docs = documents(renders["user-function"])
    greeter = named(of_kind(docs, "Service", "serving.knative.dev"))["greeter"]
    template = greeter["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/acme/cascade-greeter:1.4.0"
    assert template["spec"]["containerConcurrency"] == 4  # 1 worker x 4 threads
    assert template["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "0",
        "autoscaling.knative.dev/max-scale": "10",
        "autoscaling.knative.dev/target": "3",
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["GREETER_DEFAULT_LANGUAGE"]["value"] == "en"
    assert env["SMTP_URL"]["valueFrom"] == {"secretKeyRef": {"name": "greeter-smtp", "key": "url"}}
    assert env["CASCADE_WORKERS"]["value"] == "1"
    assert env["CASCADE_THREADS"]["value"] == "4"
    trigger = named(of_kind(docs, "Trigger"))["greeter-greeting-requested"]
    assert trigger["spec"]["filters"] == [
        {"exact": {"source": "/frontend", "type": "com.example.greeting.requested"}},
        {"cesql": "NOT EXISTS language OR language IN ('en', 'fr', 'de', 'es')"},
    ]
    assert "filter" not in trigger["spec"]
    assert trigger["spec"]["delivery"]["backoffPolicy"] == "linear"
    assert trigger["spec"]["delivery"]["deadLetterSink"]["ref"]["name"] == "dead-letter"
    shop_images = [
        s["spec"]["template"]["spec"]["containers"][0]["image"]
        for s in of_kind(docs, "Service", "serving.knative.dev")
    ]
    assert "ghcr.io/acme/cascade-order:0.1.0" in shop_images


def test_env_sink_mode_and_persistent_kafka_storage(tools: Path) -> None:
    docs = render_documents(
        set_values=[
            "sink.mode=env",
            "kafka.strimzi.storage.type=persistent-claim",
            "kafka.strimzi.storage.size=20Gi",
        ]
    )
    assert of_kind(docs, "SinkBinding") == []
    services = named(of_kind(docs, "Service", "serving.knative.dev"))
    sinks = {
        name: [
            e["value"]
            for e in s["spec"]["template"]["spec"]["containers"][0]["env"]
            if e["name"] == "K_SINK"
        ]
        for name, s in services.items()
    }
    assert sinks.pop("order") == [
        "http://kafka-broker-ingress.knative-eventing.svc.cluster.local/default/shop"
    ]
    assert all(value == [] for value in sinks.values())  # only publishers get K_SINK
    [pool] = of_kind(docs, "KafkaNodePool")
    assert pool["spec"]["storage"]["volumes"] == [
        {
            "id": 0,
            "type": "persistent-claim",
            "size": "20Gi",
            "deleteClaim": False,
            "kraftMetadata": "shared",
        }
    ]
    results = custom_validation(docs)
    assert [r["status"] for r in results if r["status"] == "invalid"] == []


def test_nats_renders_a_channel_based_broker_on_a_jetstream_channel(
    renders: dict[str, str],
) -> None:
    docs = documents(renders["nats"])
    assert of_kind(docs, "Kafka") == []
    assert of_kind(docs, "KafkaNodePool") == []
    [broker] = of_kind(docs, "Broker")
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == (
        "MTChannelBasedBroker"
    )
    configs = named(of_kind(docs, "ConfigMap"))
    assert "shop-kafka-broker-config" not in configs
    assert broker["spec"]["config"]["name"] == "shop-nats-channel"
    template = yaml.safe_load(configs["shop-nats-channel"]["data"]["channel-template-spec"])
    assert template == {
        "apiVersion": "messaging.knative.dev/v1alpha1",
        "kind": "NatsJetStreamChannel",
        "spec": {
            "stream": {
                "config": {"storage": "File", "replicas": 1, "retention": "Limits", "maxAge": "72h"}
            },
            "consumerConfigTemplate": {
                "deliverPolicy": "All",
                "replayPolicy": "Instant",
                "ackWait": "2m",
                "maxAckPending": 50,
            },
        },
    }


def test_the_channel_template_check_finds_what_the_crd_refuses() -> None:
    bad = {
        "channel-template-spec": "apiVersion: messaging.knative.dev/v1\n"
        "kind: NatsJetStreamChannel\n"
        "spec:\n  stream:\n    config:\n      storage: Disk\n      maxAge: 3 days\n"
        "  consumerConfigTemplate:\n    ackWait: 60s\n"
    }
    problems = channel_template_problems("Broker shop", bad)
    assert any("apiVersion 'messaging.knative.dev/v1'" in p for p in problems)
    assert any("stream/config/storage" in p and "'Disk'" in p for p in problems)
    assert any("stream/config/maxAge" in p for p in problems)
    assert any("'replayPolicy' is a required property" in p for p in problems)
    assert channel_template_problems("Broker shop", {}) == [
        "Broker shop: config lacks channel-template-spec"
    ]


def test_a_channel_based_broker_refuses_a_kafka_left_on(tools: Path) -> None:
    result = helm(
        "template",
        "cascade",
        str(CHART),
        "-n",
        "default",
        "--set",
        "broker.class=MTChannelBasedBroker",
    )
    assert result.returncode != 0
    assert "set kafka.strimzi.enabled=false" in result.stderr

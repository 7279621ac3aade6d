"""Kubernetes/Knative object checks, as the API server and the admission webhook make them.

Turns YAML documents into identified objects (``apiVersion``, ``kind``, ``metadata``; a
``kind: List`` is unpacked), and offers the field checks every kind shares (annotations, spec,
unknown fields, absolute URLs). Kinds the broker does not use become notices, not errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cascade.broker.topology.delivery_spec import describe_value, field_name
from cascade.broker.topology.errors import ManifestError
from cascade.broker.topology.yaml_reader import read_documents, read_text

__all__ = [
    "BROKER_CLASS_ANNOTATION",
    "DEFAULT_NAMESPACE",
    "DELIVERY_ORDER_ANNOTATION",
    "EVENTING_API",
    "EVENT_POLICY_API",
    "KAFKA_CLASSES",
    "REPLY_TYPES_ANNOTATION",
    "SERVING_API",
    "URL_ANNOTATION",
    "KubeObject",
    "absolute_http_problem",
    "object_annotations",
    "object_spec",
    "read_objects",
    "reject_unknown_fields",
]

EVENTING_API: Final = "eventing.knative.dev/v1"
EVENT_POLICY_API: Final = "eventing.knative.dev/v1alpha1"
SERVING_API: Final = "serving.knative.dev/v1"
BROKER_CLASS_ANNOTATION: Final = "eventing.knative.dev/broker.class"
DELIVERY_ORDER_ANNOTATION: Final = "kafka.eventing.knative.dev/delivery.order"
URL_ANNOTATION: Final = "cascade.dev/url"
REPLY_TYPES_ANNOTATION: Final = "cascade.dev/reply-types"
DEFAULT_NAMESPACE: Final = "default"
KAFKA_CLASSES: Final = ("Kafka", "KafkaNamespaced")

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


@dataclass(frozen=True)
class KubeObject:
    """One Kubernetes object from a manifest, identified but not yet validated."""

    source: str
    api_version: str
    kind: str
    namespace: str
    name: str
    body: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def error(self, field: str | None, message: str) -> ManifestError:
        return ManifestError(self.source, message, obj=self.label, field=field)


def read_objects(source: tuple[Path, str], notices: list[str]) -> list[KubeObject]:
    path, shown = source
    text = read_text(path, shown)
    objects: list[KubeObject] = []
    for index, (line, data) in enumerate(read_documents(shown, text), start=1):
        for item, where in _list_items(shown, line, index, data):
            obj = _identify(shown, line, where, item)
            if obj is not None:
                objects.append(obj)
            else:
                notices.append(_ignored_notice(shown, item))
    return objects


def _list_items(
    shown: str, line: int, index: int, data: object
) -> Iterator[tuple[Mapping[str, Any], str]]:
    """The objects of one document: itself, or the items of a ``kind: List``."""
    where = f"document {index}"
    if not isinstance(data, dict):
        raise ManifestError(
            shown,
            f"{where} must be a Kubernetes object (a mapping), got {describe_value(data)}",
            line=line,
        )
    if data.get("kind") == "List" and data.get("apiVersion") == "v1":
        items = data.get("items")
        if items is None:
            return
        if not isinstance(items, list):
            raise ManifestError(
                shown, f"{where}: items must be a list, got {describe_value(items)}", line=line
            )
        for i, item in enumerate(items):
            item_where = f"{where} items[{i}]"
            if not isinstance(item, dict):
                raise ManifestError(
                    shown,
                    f"{item_where} must be a Kubernetes object (a mapping), "
                    f"got {describe_value(item)}",
                    line=line,
                )
            yield item, item_where
    else:
        yield data, where


_KNOWN_KINDS: Final = {
    ("eventing.knative.dev", "Broker"): EVENTING_API,
    ("eventing.knative.dev", "Trigger"): EVENTING_API,
    ("eventing.knative.dev", "EventPolicy"): EVENT_POLICY_API,
    ("serving.knative.dev", "Service"): SERVING_API,
}


def _identify(shown: str, line: int, where: str, body: Mapping[str, Any]) -> KubeObject | None:
    """Check apiVersion, kind and metadata; None for kinds the broker does not use."""

    def fail(message: str) -> ManifestError:
        return ManifestError(shown, f"{where}: {message}", line=line)

    api_version = body.get("apiVersion")
    kind = body.get("kind")
    if not isinstance(api_version, str) or not api_version:
        raise fail(f"apiVersion is required (a string), got {describe_value(api_version)}")
    if not isinstance(kind, str) or not kind:
        raise fail(f"kind is required (a string), got {describe_value(kind)}")
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        raise fail(f"{kind}: metadata is required (a mapping), got {describe_value(metadata)}")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise fail(f"{kind}: metadata.name is required (a string), got {describe_value(name)}")

    group = api_version.rpartition("/")[0]
    expected = _KNOWN_KINDS.get((group, kind))
    if expected is None:
        return None
    namespace = metadata.get("namespace")
    if namespace is None or namespace == "":
        namespace = DEFAULT_NAMESPACE
    elif not isinstance(namespace, str) or not _is_dns_label(namespace):
        raise ManifestError(
            shown,
            f"{describe_value(namespace)} is not a valid namespace: use at most 63 lowercase "
            "letters, digits and '-', starting and ending with a letter or digit",
            obj=f"{kind} {field_name(name)}",
            field="metadata.namespace",
        )
    label = f"{kind} {namespace}/{field_name(name)}"
    if api_version != expected:
        raise ManifestError(
            shown,
            f"apiVersion {api_version!r} is not supported; use {expected!r}",
            obj=label,
            field="apiVersion",
        )
    if kind == "Service":
        if not _is_dns_label(name):
            raise ManifestError(
                shown,
                f"{describe_value(name)} is not a valid Service name: use at most 63 lowercase "
                "letters, digits and '-', starting and ending with a letter or digit",
                obj=label,
                field="metadata.name",
            )
    elif not _is_dns_subdomain(name):
        raise ManifestError(
            shown,
            f"{describe_value(name)} is not a valid {kind} name: use at most 253 lowercase "
            "letters, digits, '-' and '.', starting and ending with a letter or digit",
            obj=label,
            field="metadata.name",
        )
    return KubeObject(shown, api_version, kind, namespace, name, body)


def _ignored_notice(shown: str, body: Mapping[str, Any]) -> str:
    name = field_name(body["metadata"]["name"])
    kind = field_name(body["kind"])
    api_version = field_name(body["apiVersion"])
    if kind in ("Broker", "Trigger", "Service"):
        return f"ignored kind {kind} {name!r} (apiVersion {api_version}) in {shown}"
    return f"ignored kind {kind} {name!r} in {shown}"


def _is_dns_label(value: str) -> bool:
    return len(value) <= 63 and _DNS_LABEL.match(value) is not None


def _is_dns_subdomain(value: str) -> bool:
    return len(value) <= 253 and _DNS_SUBDOMAIN.match(value) is not None


def object_annotations(obj: KubeObject) -> dict[str, str]:
    raw = obj.body["metadata"].get("annotations")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise obj.error("metadata.annotations", f"must be a mapping, got {describe_value(raw)}")
    for key, value in raw.items():
        if not isinstance(key, str):
            raise obj.error("metadata.annotations", f"key {describe_value(key)} is not a string")
        if not isinstance(value, str):
            raise obj.error(
                f"metadata.annotations[{field_name(key)}]",
                f"must be a string (quote it in YAML), got {describe_value(value)}",
            )
    return raw


def object_spec(obj: KubeObject, *, required: bool) -> dict[str, Any]:
    spec = obj.body.get("spec")
    if spec is None:
        if required:
            raise obj.error("spec", "required")
        return {}
    if not isinstance(spec, dict):
        raise obj.error("spec", f"must be a mapping, got {describe_value(spec)}")
    return spec


def reject_unknown_fields(obj: KubeObject, spec: Mapping[Any, Any], known: tuple[str, ...]) -> None:
    for key in spec:
        if key not in known:
            raise obj.error(
                f"spec.{field_name(key)}",
                f"unknown field; a {obj.kind} spec has only {', '.join(known)}",
            )


def absolute_http_problem(value: object) -> str | None:
    """Why ``value`` is not an absolute http(s) URL, or None when it is one."""
    if not isinstance(value, str):
        return f"must be a URL string, got {describe_value(value)}"
    try:
        parts = urlsplit(value)
    except ValueError as err:
        return f"{describe_value(value)} is not a URL: {err}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{describe_value(value)} is not an absolute http(s) URL"
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return f"{describe_value(value)} has an invalid port"
    return None

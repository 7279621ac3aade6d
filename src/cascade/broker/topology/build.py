"""Knative ``Broker``, ``Trigger`` and ``Service`` objects to the local broker's topology.

Each kind's ``spec`` is validated here field by field (errors name the object and the field), and
destinations are resolved to URLs; see :mod:`cascade.broker.topology` for what is taken from where.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

from cascade.broker.dispatch.filters import Filter, FilterValidationError, compile_trigger_filter
from cascade.broker.topology.delivery_spec import (
    BROKER_DEFAULT_DELIVERY,
    DeliverySpec,
    SpecFieldError,
    describe_value,
    field_name,
    parse_delivery,
)
from cascade.broker.topology.event_policy import EventPolicyConfig, build_event_policy
from cascade.broker.topology.knative import (
    BROKER_CLASS_ANNOTATION,
    DELIVERY_ORDER_ANNOTATION,
    KAFKA_CLASSES,
    REPLY_TYPES_ANNOTATION,
    SERVING_API,
    URL_ANNOTATION,
    KubeObject,
    absolute_http_problem,
    object_annotations,
    object_spec,
    read_objects,
    reject_unknown_fields,
)
from cascade.broker.topology.yaml_reader import expand_paths

__all__ = [
    "BrokerConfig",
    "ServiceConfig",
    "Topology",
    "TriggerConfig",
    "load_topology",
]

_TRIGGER_SPEC_FIELDS: Final = ("broker", "filter", "filters", "subscriber", "delivery")
_BROKER_SPEC_FIELDS: Final = ("config", "delivery")
_DESTINATION_FIELDS: Final = ("ref", "uri", "CACerts", "audience")
_REF_FIELDS: Final = ("apiVersion", "kind", "name", "namespace")


def service_audience(namespace: str, name: str) -> str:
    """A Knative Service's OIDC audience: Serving announces none, so it is named the way Knative
    names its own (``group/kind/namespace/name``); the chart renders the same value."""
    return f"serving.knative.dev/service/{namespace}/{name}"


def broker_audience(namespace: str, name: str) -> str:
    """The audience a Knative Broker announces in ``status.address.audience``."""
    return f"eventing.knative.dev/broker/{namespace}/{name}"


@dataclass(frozen=True)
class ServiceConfig:
    """A Knative Service a destination can point at, with its local URL."""

    namespace: str
    name: str
    url: str
    reply_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class BrokerConfig:
    """A Broker; ``delivery`` is after defaulting (§3.2)."""

    namespace: str
    name: str
    delivery: DeliverySpec | None
    source: str


@dataclass(frozen=True)
class TriggerConfig:
    """A Trigger, ready for the dispatcher."""

    namespace: str
    name: str
    broker: str
    subscriber: str
    subscriber_service: ServiceConfig | None
    filter: Filter
    filter_spec: dict[str, Any]
    delivery: DeliverySpec
    ordered: bool
    source: str
    subscriber_audience: str | None = None  # sent a token for under cascade broker --oidc

    @property
    def group(self) -> str:
        """The Kafka consumer group id of this Trigger (§6.2 default template)."""
        return f"knative-trigger-{self.namespace}-{self.name}"


@dataclass(frozen=True)
class Topology:
    """Everything loaded from the manifests, in file order."""

    brokers: dict[tuple[str, str], BrokerConfig]
    triggers: tuple[TriggerConfig, ...]
    services: dict[tuple[str, str], ServiceConfig]
    notices: tuple[str, ...] = ()
    policies: tuple[EventPolicyConfig, ...] = ()

    def triggers_for(self, namespace: str, broker: str) -> tuple[TriggerConfig, ...]:
        return tuple(t for t in self.triggers if t.namespace == namespace and t.broker == broker)


def load_topology(
    paths: Sequence[Path],
    *,
    service_urls: Mapping[tuple[str, str], str] | None = None,
) -> Topology:
    """Read manifests (files or directories) and build the broker topology.

    ``service_urls`` maps ``(namespace, name)`` of a Knative Service to the URL where it runs
    locally; it wins over anything the manifests say. Raises :class:`ManifestError`.
    """
    notices: list[str] = []
    objects: list[KubeObject] = []
    for source in expand_paths(paths, notices):
        objects.extend(read_objects(source, notices))
    return _Builder(objects, dict(service_urls or {}), notices).build()


@dataclass
class _Builder:
    objects: list[KubeObject]
    service_urls: dict[tuple[str, str], str]
    notices: list[str]
    services: dict[tuple[str, str], ServiceConfig] = field(default_factory=dict)
    brokers: dict[tuple[str, str], BrokerConfig] = field(default_factory=dict)
    _service_objects: dict[tuple[str, str], KubeObject] = field(default_factory=dict)

    def build(self) -> Topology:
        self._check_duplicates()
        for obj in self._of_kind("Service"):
            self._service_objects[(obj.namespace, obj.name)] = obj
            config = self._service_config(obj)
            if config is not None:
                self.services[(obj.namespace, obj.name)] = config
        for obj in self._of_kind("Broker"):
            self.brokers[(obj.namespace, obj.name)] = self._broker(obj)
        triggers = tuple(self._trigger(obj) for obj in self._of_kind("Trigger"))
        policies = tuple(
            build_event_policy(obj, self.notices) for obj in self._of_kind("EventPolicy")
        )
        return Topology(
            brokers=self.brokers,
            triggers=triggers,
            services=self.services,
            notices=tuple(self.notices),
            policies=policies,
        )

    def _of_kind(self, kind: str) -> Iterator[KubeObject]:
        return (obj for obj in self.objects if obj.kind == kind)

    def _check_duplicates(self) -> None:
        seen: dict[tuple[str, str, str], KubeObject] = {}
        for obj in self.objects:
            key = (obj.kind, obj.namespace, obj.name)
            first = seen.setdefault(key, obj)
            if first is not obj:
                raise obj.error(
                    "metadata.name",
                    f"duplicate: {obj.label} is defined in {first.source} and again in "
                    f"{obj.source}",
                )

    # Services

    def _service_config(self, obj: KubeObject) -> ServiceConfig | None:
        annotations = object_annotations(obj)
        reply_types = tuple(
            t.strip() for t in annotations.get(REPLY_TYPES_ANNOTATION, "").split(",") if t.strip()
        )
        url = self._service_url(obj, annotations)
        return None if url is None else ServiceConfig(obj.namespace, obj.name, url, reply_types)

    def _service_url(self, obj: KubeObject, annotations: Mapping[str, str]) -> str | None:
        given = self.service_urls.get((obj.namespace, obj.name))
        if given is not None:
            return given
        if URL_ANNOTATION in annotations:
            annotated = annotations[URL_ANNOTATION]
            problem = absolute_http_problem(annotated)
            if problem:
                raise obj.error(f"metadata.annotations[{URL_ANNOTATION}]", problem)
            return annotated
        status = obj.body.get("status")
        if status is None:
            return None
        if not isinstance(status, dict):
            raise obj.error("status", f"must be a mapping, got {describe_value(status)}")
        address = status.get("address")
        candidates: list[tuple[str, object]] = []
        if isinstance(address, dict):
            candidates.append(("status.address.url", address.get("url")))
        elif address is not None:
            raise obj.error("status.address", f"must be a mapping, got {describe_value(address)}")
        candidates.append(("status.url", status.get("url")))
        for path, value in candidates:
            if value is None:
                continue
            problem = absolute_http_problem(value)
            if problem:
                raise obj.error(path, problem)
            assert isinstance(value, str)
            return value
        return None

    def _resolve_service(self, namespace: str, name: str) -> ServiceConfig | None:
        known = self.services.get((namespace, name))
        if known is not None:
            return known
        given = self.service_urls.get((namespace, name))
        if given is None:
            return None
        config = ServiceConfig(namespace, name, given, ())
        self.services[(namespace, name)] = config
        return config

    # Destinations

    def _destination(self, raw: object, namespace: str) -> tuple[str, ServiceConfig | None]:
        """Resolve a Knative Destination to an absolute URL; errors are relative to it."""
        if not isinstance(raw, dict):
            raise SpecFieldError(
                "", f"must be a mapping with ref and/or uri, got {describe_value(raw)}"
            )
        for key in raw:
            if key not in _DESTINATION_FIELDS:
                raise SpecFieldError(
                    field_name(key),
                    f"unknown field; a destination has only {', '.join(_DESTINATION_FIELDS)}",
                )
        ref = raw.get("ref")
        uri = raw.get("uri")
        if ref is None and uri is None:
            raise SpecFieldError("", "expected at least one of ref, uri; got none")
        if uri is not None and not isinstance(uri, str):
            raise SpecFieldError("uri", f"must be a string, got {describe_value(uri)}")
        if ref is None:
            assert isinstance(uri, str)
            problem = absolute_http_problem(uri)
            if problem:
                raise SpecFieldError("uri", f"{problem} (a relative URI needs a ref)")
            return uri, None
        service = self._ref_service(ref, namespace)
        if uri is None:
            return service.url, service
        try:
            absolute = urlsplit(uri).scheme != ""
        except ValueError as err:
            raise SpecFieldError("uri", f"{describe_value(uri)} is not a URI: {err}") from None
        if absolute:
            raise SpecFieldError(
                "uri", f"absolute URI {describe_value(uri)} is not allowed when ref is present"
            )
        return urljoin(service.url, uri), service

    @staticmethod
    def _audience(raw: object, service: ServiceConfig | None) -> str | None:
        """The destination's ``audience``, else its Service's; a bare URI has none (no token)."""
        if isinstance(raw, dict) and isinstance(raw.get("audience"), str) and raw["audience"]:
            return str(raw["audience"])
        return None if service is None else service_audience(service.namespace, service.name)

    def _ref_service(self, ref: object, namespace: str) -> ServiceConfig:
        if not isinstance(ref, dict):
            raise SpecFieldError("ref", f"must be a mapping, got {describe_value(ref)}")
        for key in ref:
            if key not in _REF_FIELDS:
                raise SpecFieldError(
                    f"ref.{field_name(key)}",
                    f"unknown field; a ref has only {', '.join(_REF_FIELDS)}",
                )
        values: dict[str, str] = {}
        for key in _REF_FIELDS:
            value = ref.get(key)
            if value is None or value == "":
                if key != "namespace":
                    raise SpecFieldError(f"ref.{key}", "required")
                continue
            if not isinstance(value, str):
                raise SpecFieldError(f"ref.{key}", f"must be a string, got {describe_value(value)}")
            values[key] = value
        ref_namespace = values.get("namespace", namespace)
        if ref_namespace != namespace:
            raise SpecFieldError(
                "ref.namespace",
                f"must be empty or {namespace!r} (the object's namespace); cross-namespace "
                "references are off by default in Knative",
            )
        kind, api_version, name = values["kind"], values["apiVersion"], values["name"]
        if (api_version, kind) != (SERVING_API, "Service"):
            raise SpecFieldError(
                "ref",
                f"{field_name(kind)} ({field_name(api_version)}) cannot be resolved locally: "
                f"only Knative Services ({SERVING_API}) can; give an absolute uri instead",
            )
        service = self._resolve_service(namespace, name)
        if service is None:
            present = (namespace, name) in self._service_objects
            why = (
                f"it has no {URL_ANNOTATION} annotation, status.address.url or status.url"
                if present
                else "no such Service in the manifests"
            )
            raise SpecFieldError(
                "ref",
                f"Service {namespace}/{field_name(name)} cannot be resolved to a URL: {why}, "
                "and cascade run gave no URL for it",
            )
        return service

    def _delivery(self, obj: KubeObject, raw: object) -> DeliverySpec:
        notes: list[str] = []
        audiences: list[str | None] = []

        def dead_letter_sink(value: object) -> str:
            url, service = self._destination(value, obj.namespace)
            audiences.append(self._audience(value, service))
            self._note_ignored_destination_fields(obj, value, "spec.delivery.deadLetterSink")
            return url

        try:
            spec = parse_delivery(raw, resolve_dead_letter_sink=dead_letter_sink, notices=notes)
        except SpecFieldError as err:
            located = err.within("spec.delivery")
            raise obj.error(located.field, located.message) from None
        self.notices.extend(f"{obj.source}: {obj.label}: spec.delivery: {n}" for n in notes)
        return replace(spec, dead_letter_audience=audiences[0]) if audiences else spec

    # Brokers

    def _broker(self, obj: KubeObject) -> BrokerConfig:
        annotations = object_annotations(obj)
        broker_class = annotations.get(BROKER_CLASS_ANNOTATION)
        if broker_class is None:
            self.notices.append(
                f"{obj.source}: {obj.label}: no {BROKER_CLASS_ANNOTATION} annotation; "
                "Kafka class semantics are used"
            )
        elif broker_class not in KAFKA_CLASSES:
            self.notices.append(
                f"{obj.source}: {obj.label}: class {field_name(broker_class)!r} is not "
                "emulated; Kafka class semantics are used"
            )
        spec = object_spec(obj, required=False)
        reject_unknown_fields(obj, spec, _BROKER_SPEC_FIELDS)
        raw_delivery = spec.get("delivery")
        delivery = (
            BROKER_DEFAULT_DELIVERY if raw_delivery is None else self._delivery(obj, raw_delivery)
        )
        return BrokerConfig(obj.namespace, obj.name, delivery, obj.source)

    # Triggers

    def _trigger(self, obj: KubeObject) -> TriggerConfig:
        annotations = object_annotations(obj)
        order = annotations.get(DELIVERY_ORDER_ANNOTATION, "unordered")
        if order not in ("ordered", "unordered"):
            raise obj.error(
                f"metadata.annotations[{DELIVERY_ORDER_ANNOTATION}]",
                f"must be 'ordered' or 'unordered', got {describe_value(order)}",
            )
        spec = object_spec(obj, required=True)
        if "brokerRef" in spec:
            raise obj.error(
                "spec.brokerRef",
                "not supported: cross-namespace brokers need Knative's "
                "cross-namespace-event-links feature, which is off by default; use spec.broker",
            )
        reject_unknown_fields(obj, spec, _TRIGGER_SPEC_FIELDS)
        broker = spec.get("broker")
        if broker is None or broker == "":
            raise obj.error("spec.broker", "required: the name of a Broker in the same namespace")
        if not isinstance(broker, str):
            raise obj.error("spec.broker", f"must be a string, got {describe_value(broker)}")

        try:
            compiled = compile_trigger_filter(spec)
        except FilterValidationError as err:
            raise obj.error(err.field, err.message) from None
        filter_spec = {k: spec[k] for k in ("filter", "filters") if spec.get(k) is not None}

        if spec.get("subscriber") is None:
            raise obj.error("spec.subscriber", "required: a ref and/or uri")
        try:
            subscriber, service = self._destination(spec["subscriber"], obj.namespace)
        except SpecFieldError as err:
            located = err.within("spec.subscriber")
            raise obj.error(located.field, located.message) from None
        self._note_ignored_destination_fields(obj, spec["subscriber"], "spec.subscriber")

        broker_config = self.brokers.get((obj.namespace, broker))
        if broker_config is None:
            loaded = sorted(name for ns, name in self.brokers if ns == obj.namespace)
            hint = f"loaded: {', '.join(loaded)}" if loaded else "none is loaded"
            raise obj.error(
                "spec.broker",
                f"Broker {field_name(broker)!r} not found in namespace {obj.namespace!r} ({hint})",
            )
        raw_delivery = spec.get("delivery")
        if raw_delivery is not None:  # the Trigger's delivery replaces the Broker's whole (§3.2)
            delivery = self._delivery(obj, raw_delivery)
        else:
            delivery = broker_config.delivery or DeliverySpec()
        return TriggerConfig(
            namespace=obj.namespace,
            name=obj.name,
            broker=broker,
            subscriber=subscriber,
            subscriber_service=service,
            filter=compiled,
            filter_spec=filter_spec,
            delivery=delivery,
            ordered=order == "ordered",
            source=obj.source,
            subscriber_audience=self._audience(spec["subscriber"], service),
        )

    def _note_ignored_destination_fields(self, obj: KubeObject, raw: object, path: str) -> None:
        if isinstance(raw, dict):
            for key in ("CACerts",):
                if raw.get(key) is not None:
                    self.notices.append(
                        f"{obj.source}: {obj.label}: {path}.{key} is ignored by the local broker"
                    )

"""Load Knative ``Broker``, ``Trigger`` and ``Service`` manifests into the local broker's topology.

``cascade broker -f FILE`` reads the same YAML that ``kubectl apply -f`` takes (one or many
documents per file, a directory of ``.yaml``/``.yml``/``.json`` files, or a ``List``) and
validates it like the Knative admission webhook (semantics spec §2.2, §3.1), so a manifest that
starts here also applies on a cluster. Anything wrong stops startup with a :class:`ManifestError`
that names the file, the object and the field.

What is taken from where:

- Brokers: the Kafka class is emulated whatever the class annotation says (a notice says so for
  other classes). A Broker without ``spec.delivery`` gets ``config-br-defaults`` (retry 10,
  exponential, PT0.2S; §3.2).
- Triggers: the effective delivery is the Trigger's whole ``spec.delivery`` if set, else the
  Broker's, else none: fields are never merged (§3.2). Filters are compiled by
  :func:`cascade.broker.dispatch.filters.compile_trigger_filter`. Ordering comes from the
  ``kafka.eventing.knative.dev/delivery.order`` annotation (§6.3).
- Destinations (``subscriber``, ``deadLetterSink``): an absolute ``uri`` is used as is; a ``ref``
  must name a Knative Service, whose URL comes from ``service_urls`` (given by ``cascade run``),
  else its ``cascade.dev/url`` annotation, else ``status.address.url``, else ``status.url``; a
  relative ``uri`` beside a ``ref`` is resolved against the ref's URL (RFC 3986, as Knative's
  resolver does).

YAML is read with safe constructors only, from files of at most 10 MiB, with bounded nesting,
node count and alias expansion, so hostile input fails fast with a clear error.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from cascade.broker.dispatch.filters import Filter, FilterValidationError, compile_trigger_filter
from cascade.broker.topology.delivery_spec import (
    BROKER_DEFAULT_DELIVERY,
    DeliverySpec,
    SpecFieldError,
    describe_value,
    field_name,
    parse_delivery,
)

__all__ = [
    "BROKER_CLASS_ANNOTATION",
    "DELIVERY_ORDER_ANNOTATION",
    "REPLY_TYPES_ANNOTATION",
    "URL_ANNOTATION",
    "BrokerConfig",
    "DeliverySpec",
    "ManifestError",
    "ServiceConfig",
    "Topology",
    "TriggerConfig",
    "load_topology",
]

EVENTING_API: Final = "eventing.knative.dev/v1"
SERVING_API: Final = "serving.knative.dev/v1"
BROKER_CLASS_ANNOTATION: Final = "eventing.knative.dev/broker.class"
DELIVERY_ORDER_ANNOTATION: Final = "kafka.eventing.knative.dev/delivery.order"
URL_ANNOTATION: Final = "cascade.dev/url"
REPLY_TYPES_ANNOTATION: Final = "cascade.dev/reply-types"
DEFAULT_NAMESPACE: Final = "default"
KAFKA_CLASSES: Final = ("Kafka", "KafkaNamespaced")

MAX_FILE_BYTES: Final = 10 * 1024 * 1024
MAX_DOCUMENTS_PER_FILE: Final = 10_000
MAX_NODES_PER_FILE: Final = 500_000
MAX_NESTING: Final = 64
# A document may reuse anchors, but may not expand to much more than it spells out
# ("billion laughs"), nor refer to itself.
MIN_EXPANSION_BUDGET: Final = 10_000
EXPANSION_FACTOR: Final = 10

MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")

_TRIGGER_SPEC_FIELDS: Final = ("broker", "filter", "filters", "subscriber", "delivery")
_BROKER_SPEC_FIELDS: Final = ("config", "delivery")
_DESTINATION_FIELDS: Final = ("ref", "uri", "CACerts", "audience")
_REF_FIELDS: Final = ("apiVersion", "kind", "name", "namespace")


class ManifestError(Exception):
    """A manifest that cannot be loaded.

    ``str(err)`` is ``"<file>: Trigger default/orders: spec.delivery.backoffDelay: <message>"``;
    YAML-level errors carry a line instead of an object: ``"<file>:12:3: <message>"``.
    """

    def __init__(
        self,
        file: str,
        message: str,
        *,
        obj: str | None = None,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.file = file
        self.message = message
        self.obj = obj
        self.field = field
        self.line = line
        self.column = column
        where = file
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        parts = [where, *(p for p in (obj, field) if p), message]
        super().__init__(": ".join(parts))


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
    objects: list[_Object] = []
    for source in _expand_paths(paths, notices):
        objects.extend(_read_objects(source, notices))
    return _Builder(objects, dict(service_urls or {}), notices).build()


# --- reading files ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Object:
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


def _expand_paths(paths: Sequence[Path], notices: list[str]) -> Iterator[tuple[Path, str]]:
    """Files to read with the name to show; a directory gives its manifest files, sorted."""
    for path in paths:
        if path.is_dir():
            try:
                children = sorted(
                    p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file()
                )
            except OSError as err:
                raise ManifestError(
                    str(path), f"cannot read directory: {err.strerror or err}"
                ) from None
            if not children:
                notices.append(f"no {'/'.join(MANIFEST_SUFFIXES)} files in directory {path}")
            for child in children:
                yield child, str(child)
        else:
            yield path, str(path)


def _read_text(path: Path, shown: str) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(shown, "file not found") from None
    except OSError as err:
        raise ManifestError(shown, f"cannot read file: {err.strerror or err}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ManifestError(
            shown, f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; split it"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ManifestError(shown, "not UTF-8 text", line=line) from None


class _BoundedComposer(Composer):
    """PyYAML's composer with limits on nesting depth and node count.

    Composing is recursive; the limit keeps it far from Python's recursion limit, and libyaml's
    own composer (which crashes the process on deep nesting) is never used.
    """

    nodes_composed = 0
    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self.nodes_composed += 1
        if self.nodes_composed > MAX_NODES_PER_FILE:
            raise ComposerError(
                None, None, f"more than {MAX_NODES_PER_FILE} YAML nodes", self._mark()
            )
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise ComposerError(
                    None, None, f"nested deeper than {MAX_NESTING} levels", self._mark()
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _mark(self) -> Any:
        event = self.peek_event()  # type: ignore[attr-defined]
        return None if event is None else event.start_mark


class _StrictConstructor(SafeConstructor):
    """Safe constructors that refuse a key given twice in one mapping.

    PyYAML would keep the last value silently; ``kubectl apply`` (strict field validation)
    rejects duplicate fields, and a second ``delivery:`` in a Trigger is surely a mistake.
    Keys brought in by a ``<<`` merge may still be overridden, as YAML intends.
    """

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value[:60]!r}",
                        key_node.start_mark,
                    )
                seen.add(ident)
        return super().construct_mapping(node, deep=deep)


_MERGE_TAG: Final = "tag:yaml.org,2002:merge"

try:
    from yaml._yaml import CParser as _LibYamlParser

    class _Loader(_BoundedComposer, _LibYamlParser, _StrictConstructor, Resolver):
        """libyaml scans and parses (fast, iterative); Python composes and constructs."""

        def __init__(self, text: str) -> None:
            _LibYamlParser.__init__(self, text)
            _StrictConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

except ImportError:  # pragma: no cover - PyYAML built without libyaml

    class _Loader(  # type: ignore[no-redef]
        _BoundedComposer,
        Reader,
        Scanner,
        Parser,
        _StrictConstructor,
        Resolver,
    ):
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)
            _StrictConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)


def _yaml_error(shown: str, text: str, err: Exception) -> ManifestError:
    """A ManifestError with the line and column of a PyYAML error."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        message = "; ".join(str(p) for p in (err.context, err.problem) if p)
        if mark is not None:
            return ManifestError(
                shown, f"invalid YAML: {message}", line=mark.line + 1, column=mark.column + 1
            )
        return ManifestError(shown, f"invalid YAML: {message}")
    if isinstance(err, ReaderError):
        line = text.count("\n", 0, err.position) + 1
        char = err.character if isinstance(err.character, int) else ord(err.character[:1] or "\0")
        return ManifestError(
            shown, f"invalid YAML: character U+{char:04X} is not allowed", line=line
        )
    return ManifestError(shown, f"invalid YAML: {err}")


def _documents(shown: str, text: str) -> Iterator[tuple[int, object]]:
    """(first line, value) of every non-empty YAML document in ``text``."""
    try:
        loader = _Loader(text)  # the pure-Python reader already checks characters here
    except yaml.YAMLError as err:
        raise _yaml_error(shown, text, err) from None
    try:
        count = 0
        while True:
            line: int | None = None
            try:
                if not loader.check_node():
                    return
                before = loader.nodes_composed
                node = loader.get_node()
                if node is None:  # pragma: no cover - check_node said there is one
                    return
                line = node.start_mark.line + 1
                data = loader.construct_document(node)
            except yaml.YAMLError as err:
                raise _yaml_error(shown, text, err) from None
            except (ValueError, OverflowError) as err:
                # A scalar PyYAML recognized but cannot build: the date 2024-02-30, !!int x.
                raise ManifestError(shown, f"invalid YAML value: {err}", line=line) from None
            except (IndexError, KeyError, TypeError, AttributeError):
                # PyYAML's constructors fail this way on some explicit tags: !!int '', !!bool x.
                raise ManifestError(
                    shown, "invalid YAML value: a scalar does not fit its explicit tag", line=line
                ) from None
            except RecursionError:
                raise ManifestError(shown, "YAML nested too deeply", line=line) from None
            count += 1
            if count > MAX_DOCUMENTS_PER_FILE:
                raise ManifestError(
                    shown, f"more than {MAX_DOCUMENTS_PER_FILE} YAML documents; split the file"
                )
            budget = max(MIN_EXPANSION_BUDGET, EXPANSION_FACTOR * (loader.nodes_composed - before))
            problem = _expansion_problem(data, budget)
            if problem:
                raise ManifestError(shown, problem, line=line)
            if data is not None:  # an empty document, e.g. after a trailing '---'
                yield line, data
    finally:
        loader.dispose()


def _expansion_problem(data: object, budget: int) -> str | None:
    """Why a document built through YAML aliases is unsafe to walk, or None if it is fine."""
    stack: list[tuple[object, int]] = [(data, 1)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > budget:
            return f"document expands to more than {budget} values through YAML aliases"
        if depth > MAX_NESTING:
            return (
                f"document is nested deeper than {MAX_NESTING} levels "
                "(a YAML alias that refers to itself?)"
            )
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return None


def _read_objects(source: tuple[Path, str], notices: list[str]) -> list[_Object]:
    path, shown = source
    text = _read_text(path, shown)
    objects: list[_Object] = []
    for index, (line, data) in enumerate(_documents(shown, text), start=1):
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
    ("serving.knative.dev", "Service"): SERVING_API,
}


def _identify(shown: str, line: int, where: str, body: Mapping[str, Any]) -> _Object | None:
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
    return _Object(shown, api_version, kind, namespace, name, body)


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


# --- building the topology ----------------------------------------------------------------


@dataclass
class _Builder:
    objects: list[_Object]
    service_urls: dict[tuple[str, str], str]
    notices: list[str]
    services: dict[tuple[str, str], ServiceConfig] = field(default_factory=dict)
    brokers: dict[tuple[str, str], BrokerConfig] = field(default_factory=dict)
    _service_objects: dict[tuple[str, str], _Object] = field(default_factory=dict)

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
        return Topology(
            brokers=self.brokers,
            triggers=triggers,
            services=self.services,
            notices=tuple(self.notices),
        )

    def _of_kind(self, kind: str) -> Iterator[_Object]:
        return (obj for obj in self.objects if obj.kind == kind)

    def _check_duplicates(self) -> None:
        seen: dict[tuple[str, str, str], _Object] = {}
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

    def _service_config(self, obj: _Object) -> ServiceConfig | None:
        annotations = _annotations(obj)
        reply_types = tuple(
            t.strip() for t in annotations.get(REPLY_TYPES_ANNOTATION, "").split(",") if t.strip()
        )
        url = self._service_url(obj, annotations)
        return None if url is None else ServiceConfig(obj.namespace, obj.name, url, reply_types)

    def _service_url(self, obj: _Object, annotations: Mapping[str, str]) -> str | None:
        given = self.service_urls.get((obj.namespace, obj.name))
        if given is not None:
            return given
        if URL_ANNOTATION in annotations:
            annotated = annotations[URL_ANNOTATION]
            problem = _absolute_http_problem(annotated)
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
            problem = _absolute_http_problem(value)
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
            problem = _absolute_http_problem(uri)
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

    def _delivery(self, obj: _Object, raw: object) -> DeliverySpec:
        notes: list[str] = []

        def dead_letter_sink(value: object) -> str:
            url = self._destination(value, obj.namespace)[0]
            self._note_ignored_destination_fields(obj, value, "spec.delivery.deadLetterSink")
            return url

        try:
            spec = parse_delivery(raw, resolve_dead_letter_sink=dead_letter_sink, notices=notes)
        except SpecFieldError as err:
            located = err.within("spec.delivery")
            raise obj.error(located.field, located.message) from None
        self.notices.extend(f"{obj.source}: {obj.label}: spec.delivery: {n}" for n in notes)
        return spec

    # Brokers

    def _broker(self, obj: _Object) -> BrokerConfig:
        annotations = _annotations(obj)
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
        spec = _spec(obj, required=False)
        _reject_unknown(obj, spec, _BROKER_SPEC_FIELDS)
        raw_delivery = spec.get("delivery")
        delivery = (
            BROKER_DEFAULT_DELIVERY if raw_delivery is None else self._delivery(obj, raw_delivery)
        )
        return BrokerConfig(obj.namespace, obj.name, delivery, obj.source)

    # Triggers

    def _trigger(self, obj: _Object) -> TriggerConfig:
        annotations = _annotations(obj)
        order = annotations.get(DELIVERY_ORDER_ANNOTATION, "unordered")
        if order not in ("ordered", "unordered"):
            raise obj.error(
                f"metadata.annotations[{DELIVERY_ORDER_ANNOTATION}]",
                f"must be 'ordered' or 'unordered', got {describe_value(order)}",
            )
        spec = _spec(obj, required=True)
        if "brokerRef" in spec:
            raise obj.error(
                "spec.brokerRef",
                "not supported: cross-namespace brokers need Knative's "
                "cross-namespace-event-links feature, which is off by default; use spec.broker",
            )
        _reject_unknown(obj, spec, _TRIGGER_SPEC_FIELDS)
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
        )

    def _note_ignored_destination_fields(self, obj: _Object, raw: object, path: str) -> None:
        if isinstance(raw, dict):
            for key in ("CACerts", "audience"):
                if raw.get(key) is not None:
                    self.notices.append(
                        f"{obj.source}: {obj.label}: {path}.{key} is ignored by the local broker"
                    )


def _annotations(obj: _Object) -> dict[str, str]:
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


def _spec(obj: _Object, *, required: bool) -> dict[str, Any]:
    spec = obj.body.get("spec")
    if spec is None:
        if required:
            raise obj.error("spec", "required")
        return {}
    if not isinstance(spec, dict):
        raise obj.error("spec", f"must be a mapping, got {describe_value(spec)}")
    return spec


def _reject_unknown(obj: _Object, spec: Mapping[Any, Any], known: tuple[str, ...]) -> None:
    for key in spec:
        if key not in known:
            raise obj.error(
                f"spec.{field_name(key)}",
                f"unknown field; a {obj.kind} spec has only {', '.join(known)}",
            )


def _absolute_http_problem(value: object) -> str | None:
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

"""The event catalog of a functions folder: which CloudEvents types flow, who produces them, who
receives them, and their JSON Schemas and Knative ``EventType`` objects. ``cascade catalog``
prints or writes it; the shop's docs/events.md and the chart's ``eventTypes`` are made from it.

Where everything comes from, so the catalog cannot drift from the code:

- the functions: every ``<name>/func.py`` of the folder (:func:`cascade.testing.discover`);
- types: what each function handles (``@fn.on``), the replies its handlers declare (their
  return annotations), and the models a ``func.py`` lists in ``PUBLISHES`` (events it sends
  to ``K_SINK`` itself, e.g. from an HTTP route);
- schemas: each type's pydantic model (``model_json_schema()``, tagged ``x-cloudevents-type``);
- consumers: the Triggers of the manifests (``-f``) whose filters match the type, by the
  broker's own filter engine.

```python
from cascade.catalog import build_catalog

catalog = build_catalog("functions", manifests=["k8s/rendered/shop.yaml"])
for entry in catalog.entries:
    print(entry.type, entry.producers, entry.consumers)
```
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from cascade.discovery import DiscoveredFunction, discover
from cascade.events import Event, EventRegistry, bound_type

__all__ = [
    "Catalog",
    "CatalogEntry",
    "Consumer",
    "EventTypeApi",
    "Producer",
    "build_catalog",
    "event_type_name",
    "schema_file_name",
    "schema_json",
]

EventTypeApi = Literal["v1beta2", "v1beta3"]
EVENT_TYPE_APIS: Final = ("v1beta2", "v1beta3")
_UNSAFE_FILE_CHARACTERS: Final = re.compile(r"[^A-Za-z0-9._-]")
_NOT_DNS: Final = re.compile(r"[^a-z0-9.-]+")


@dataclass(frozen=True)
class Producer:
    """A function that emits the type: as a handler's ``reply`` or by ``publish`` to K_SINK."""

    function: str
    source: str
    how: Literal["reply", "publish"]

    def describe(self) -> str:
        return f"{self.function} ({'reply' if self.how == 'reply' else 'published to K_SINK'})"


@dataclass(frozen=True)
class Consumer:
    """A Trigger of the manifests that delivers the type to a function."""

    function: str
    trigger: str
    namespace: str
    ordered: bool

    def describe(self) -> str:
        order = "ordered" if self.ordered else "unordered"
        return f"{self.function} (Trigger `{self.trigger}`, {order})"


@dataclass(frozen=True)
class CatalogEntry:
    type: str
    model: builtins.type[Event]
    producers: tuple[Producer, ...]
    consumers: tuple[Consumer, ...]

    @property
    def summary(self) -> str:
        """The model's docstring on one line (Markdown code spans kept single)."""
        return " ".join((self.model.__doc__ or "").split()).replace("``", "`")

    def json_schema(self) -> dict[str, Any]:
        schema = self.model.model_json_schema()
        schema["x-cloudevents-type"] = self.type
        return schema


@dataclass(frozen=True)
class Catalog:
    functions: tuple[DiscoveredFunction, ...]
    entries: tuple[CatalogEntry, ...]  # by type

    def entry(self, event_type: str) -> CatalogEntry:
        for entry in self.entries:
            if entry.type == event_type:
                return entry
        raise KeyError(f"no event type {event_type!r} in the catalog")

    def ordered(self, models: Iterable[type[Event]]) -> list[CatalogEntry]:
        """The entries of ``models``, in that order (a saga's order, say)."""
        return [self.entry(bound_type(model)) for model in models]

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        return {entry.type: entry.json_schema() for entry in self.entries}

    def event_types(
        self,
        *,
        broker: str = "default",
        namespace: str = "default",
        api: EventTypeApi = "v1beta2",
    ) -> list[dict[str, Any]]:
        """One Knative ``EventType`` per type, referencing ``broker``.

        ``v1beta2`` (what Knative 1.20 stores, and what the chart renders) has ``type``,
        ``source`` and a description; ``v1beta3`` lists the attributes. The source is pinned
        only when exactly one function produces the type."""
        objects = []
        for entry in self.entries:
            sources = sorted({p.source for p in entry.producers})
            source = sources[0] if len(sources) == 1 else None
            producers = ", ".join(sorted({p.function for p in entry.producers})) or "nobody"
            spec: dict[str, Any] = {}
            if api == "v1beta2":
                spec["type"] = entry.type
                if source is not None:
                    spec["source"] = source
            spec["reference"] = {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "name": broker,
            }
            spec["description"] = f"{entry.summary} Produced by {producers}.".strip()
            if api == "v1beta3":
                spec["attributes"] = _attributes(entry.type, source)
            objects.append(
                {
                    "apiVersion": f"eventing.knative.dev/{api}",
                    "kind": "EventType",
                    "metadata": {"name": event_type_name(entry.type), "namespace": namespace},
                    "spec": spec,
                }
            )
        return objects


def _attributes(event_type: str, source: str | None) -> list[dict[str, Any]]:
    """v1beta3 ``spec.attributes``: what every event of the type carries."""
    pinned: dict[str, Any] = {"name": "source"}
    if source is not None:
        pinned["value"] = source
    pinned["required"] = True
    return [
        {"name": "specversion", "value": "1.0", "required": True},
        {"name": "id", "required": True},
        {"name": "type", "value": event_type, "required": True},
        pinned,
        {"name": "datacontenttype", "value": "application/json", "required": True},
        {"name": "time", "required": True},
    ]


def build_catalog(functions_dir: str | Path, *, manifests: Sequence[str | Path] = ()) -> Catalog:
    """The catalog of ``functions_dir``; consumers only when ``manifests`` are given.

    Raises :class:`cascade.testing.DiscoveryError` for a bad folder and
    :class:`cascade.broker.topology.ManifestError` for bad manifests."""
    functions = tuple(discover(functions_dir))
    registry = EventRegistry()
    producers: dict[str, list[Producer]] = {}
    for found in functions:
        function = found.function
        source = function.source or f"/{function.name}"
        own = function.registry
        for event_type in own:
            registry.register(_model(own, event_type))
        published = [*getattr(found.module, "PUBLISHES", ())]
        for model in published:
            registry.register(model)
        for event_type in function.produces():
            producers.setdefault(event_type, []).append(Producer(found.name, source, "reply"))
        for model in published:
            producers.setdefault(bound_type(model), []).append(
                Producer(found.name, source, "publish")
            )
    consumers = _consumers(registry, manifests, [f.name for f in functions]) if manifests else {}
    entries = tuple(
        CatalogEntry(
            event_type,
            _model(registry, event_type),
            tuple(producers.get(event_type, ())),
            tuple(consumers.get(event_type, ())),
        )
        for event_type in registry
    )
    return Catalog(functions, entries)


def schema_file_name(event_type: str) -> str:
    """A safe file name for a type's schema: no path separators, no leading dot."""
    name = _UNSAFE_FILE_CHARACTERS.sub("_", event_type).lstrip(".") or "_"
    return f"{name}.schema.json"


def event_type_name(event_type: str) -> str:
    """A DNS-1123 subdomain for the EventType object (types are usually one already)."""
    name = _NOT_DNS.sub("-", event_type.lower()).strip(".-")[:253].strip(".-")
    return name or "event"


def schema_json(schema: Mapping[str, Any]) -> str:
    """A schema as committed: indented, keys sorted, one trailing newline."""
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


def _model(registry: EventRegistry, event_type: str) -> type[Event]:
    model = registry.get(event_type)
    assert model is not None  # every type in the registry has its model
    return model


def _consumers(
    registry: EventRegistry, manifests: Sequence[str | Path], functions: Sequence[str]
) -> dict[str, list[Consumer]]:
    # The broker is imported only here: the catalog of a folder without manifests needs none.
    from cascade.broker.topology import load_topology
    from cascade.testing.chain import manifest_namespaces

    namespaces = manifest_namespaces(manifests)
    urls = {(ns, name): f"http://{name}.{ns}.local" for ns in namespaces for name in functions}
    topology = load_topology([Path(m) for m in manifests], service_urls=urls)
    found: dict[str, list[Consumer]] = {}
    for event_type in registry:
        attributes = {
            "specversion": "1.0",
            "id": "catalog",
            "source": "/catalog",
            "type": event_type,
        }
        for trigger in topology.triggers:
            service = trigger.subscriber_service
            if service is not None and trigger.filter.matches(attributes):
                found.setdefault(event_type, []).append(
                    Consumer(service.name, trigger.name, trigger.namespace, trigger.ordered)
                )
    return found

"""Knative ``Broker``, ``Trigger`` and ``Service`` manifests to the local broker's topology.

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

The layers, bottom up: :mod:`.yaml_reader` (hardened YAML), :mod:`.knative` (object identity and
shared field checks), :mod:`.delivery_spec` (``DeliverySpec``), :mod:`.build` (per-kind
validation, destinations, the :class:`Topology`). :mod:`.service_urls` parses ``--service-url``.
"""

from cascade.broker.topology.build import (
    BrokerConfig,
    ServiceConfig,
    Topology,
    TriggerConfig,
    load_topology,
)
from cascade.broker.topology.delivery_spec import DeliverySpec
from cascade.broker.topology.errors import ManifestError
from cascade.broker.topology.knative import (
    BROKER_CLASS_ANNOTATION,
    DELIVERY_ORDER_ANNOTATION,
    REPLY_TYPES_ANNOTATION,
    URL_ANNOTATION,
)
from cascade.broker.topology.yaml_reader import MANIFEST_SUFFIXES

__all__ = [
    "BROKER_CLASS_ANNOTATION",
    "DELIVERY_ORDER_ANNOTATION",
    "MANIFEST_SUFFIXES",
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

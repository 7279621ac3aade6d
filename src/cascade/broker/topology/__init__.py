"""Knative ``Broker``, ``Trigger`` and ``Service`` manifests to the local broker's topology."""

from cascade.broker.topology.build import (
    BROKER_CLASS_ANNOTATION,
    DELIVERY_ORDER_ANNOTATION,
    MANIFEST_SUFFIXES,
    REPLY_TYPES_ANNOTATION,
    URL_ANNOTATION,
    BrokerConfig,
    DeliverySpec,
    ManifestError,
    ServiceConfig,
    Topology,
    TriggerConfig,
    load_topology,
)

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

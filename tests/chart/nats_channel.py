"""The channel template of a MTChannelBasedBroker on NATS JetStream, checked offline.

No API server runs here, so the NatsJetStreamChannel a channel-based Broker will create is
checked against the fields and enums of eventing-natss's CRD and Go types
(messaging.knative.dev/v1alpha1, config/jetstream/302-jsm-channel.yaml and
pkg/apis/messaging/v1alpha1/nats_jetstream_types.go at knative-v1.20.0), for the part of the
spec the chart can render. Durations are Go durations (metav1.Duration).
"""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml

__all__ = ["TEMPLATE_KEY", "channel_template_problems"]

# Knative Eventing's broker config key (the legacy "channelTemplateSpec" is still read).
TEMPLATE_KEY = "channel-template-spec"

_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stream": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "overrideName": {"type": "string"},
                "config": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "additionalSubjects": {"type": "array", "items": {"type": "string"}},
                        "retention": {"enum": ["Limits", "Interest", "Work"]},
                        "maxConsumers": {"type": "integer"},
                        "maxMsgs": {"type": "integer"},
                        "maxBytes": {"type": "integer"},
                        "discard": {"enum": ["Old", "New"]},
                        "maxAge": _DURATION,
                        "maxMsgSize": {"type": "integer"},
                        "storage": {"enum": ["File", "Memory"]},
                        "replicas": {"type": "integer", "minimum": 1},
                        "noAck": {"type": "boolean"},
                        "duplicateWindow": _DURATION,
                    },
                },
            },
        },
        "consumerConfigTemplate": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "deliverPolicy": {"enum": ["All", "Last", "New", "ByStartSequence", "ByStartTime"]},
                "optStartSeq": {"type": "integer", "minimum": 0},
                "ackWait": _DURATION,
                "maxDeliver": {"type": "integer"},
                "filterSubject": {"type": "string"},
                # No omitempty in the Go type: always rendered.
                "replayPolicy": {"enum": ["Instant", "Original"]},
                "rateLimitBPS": {"type": "integer", "minimum": 0},
                "maxAckPending": {"type": "integer"},
                "consumerType": {"enum": ["Push", "Pull"]},
                "fetchMaxWait": _DURATION,
                "fetchBatchSize": {"type": "integer", "minimum": 1},
            },
            "required": ["replayPolicy"],
        },
    },
}


def channel_template_problems(label: str, data: dict[str, Any]) -> list[str]:
    """What is wrong with the channel template in a Broker config ConfigMap's ``data``."""
    text = data.get(TEMPLATE_KEY)
    if not text:
        return [f"{label}: config lacks {TEMPLATE_KEY}"]
    template = yaml.safe_load(text)
    problems = []
    if template.get("apiVersion") != "messaging.knative.dev/v1alpha1":
        problems.append(f"{label}: channel apiVersion {template.get('apiVersion')!r}")
    if template.get("kind") != "NatsJetStreamChannel":
        problems.append(f"{label}: channel kind {template.get('kind')!r}")
    validator = jsonschema.Draft7Validator(_SPEC_SCHEMA)
    for error in validator.iter_errors(template.get("spec") or {}):
        where = "/".join(str(part) for part in error.absolute_path)
        problems.append(f"{label}: channel spec {where}: {error.message}")
    return problems

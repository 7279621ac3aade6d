"""Knative ``EventPolicy`` objects: who may send what to which Broker.

A policy applies to the Brokers its ``spec.to`` names by ``ref`` (no ``to``: every Broker of its
namespace); a ``ref`` to another kind (a Knative Service) is left to that receiver, which for a
Cascade function checks the same subjects itself (``CASCADE_OIDC_ALLOWED_SUBJECTS``).
It allows a sender whose token subject matches one of ``spec.from`` (``sub``, a trailing ``*``
as a prefix; or ``ref``, the subject of that resource's OIDC service account as Knative names
it) and whose event passes every one of ``spec.filters``. ``to.selector`` (labels)
is refused rather than guessed: the local broker does not read labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cascade.broker.dispatch.filters import Filter, FilterValidationError, compile_trigger_filter
from cascade.broker.topology.delivery_spec import describe_value, field_name
from cascade.broker.topology.knative import KubeObject, object_spec, reject_unknown_fields
from cascade.issuer import knative_child_name

__all__ = ["EventPolicyConfig", "build_event_policy", "policies_for"]

_SPEC_FIELDS: Final = ("to", "from", "filters")
_BROKER_REF: Final = ("eventing.knative.dev/v1", "Broker")


@dataclass(frozen=True)
class EventPolicyConfig:
    namespace: str
    name: str
    brokers: tuple[str, ...] | None  # None: every Broker in the namespace
    subjects: tuple[str, ...]  # exact, or a prefix when ending with "*"
    filter: Filter | None

    def applies_to(self, namespace: str, broker: str) -> bool:
        return namespace == self.namespace and (self.brokers is None or broker in self.brokers)


def policies_for(
    policies: Iterable[EventPolicyConfig], namespace: str, broker: str
) -> tuple[EventPolicyConfig, ...]:
    return tuple(policy for policy in policies if policy.applies_to(namespace, broker))


def build_event_policy(obj: KubeObject, notices: list[str]) -> EventPolicyConfig:
    spec = object_spec(obj, required=True)
    reject_unknown_fields(obj, spec, _SPEC_FIELDS)
    brokers = _targets(obj, spec.get("to"), notices)
    subjects = _subjects(obj, spec.get("from"))
    policy_filter = None
    if spec.get("filters") is not None:
        try:
            policy_filter = compile_trigger_filter({"filters": spec["filters"]})
        except FilterValidationError as err:
            raise obj.error(err.field, err.message) from None
    return EventPolicyConfig(obj.namespace, obj.name, brokers, subjects, policy_filter)


def _entries(obj: KubeObject, raw: object, path: str) -> Sequence[dict[str, Any]]:
    if not isinstance(raw, list):
        raise obj.error(path, f"must be a list, got {describe_value(raw)}")
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise obj.error(f"{path}[{index}]", f"must be a mapping, got {describe_value(entry)}")
    return raw


def _targets(obj: KubeObject, raw: object, notices: list[str]) -> tuple[str, ...] | None:
    if raw is None:
        return None
    brokers: list[str] = []
    for index, entry in enumerate(_entries(obj, raw, "spec.to")):
        path = f"spec.to[{index}]"
        if "selector" in entry:
            raise obj.error(
                f"{path}.selector",
                "not supported locally (the local broker does not read labels); name the "
                "Broker with ref",
            )
        ref = entry.get("ref")
        if not isinstance(ref, dict) or set(entry) != {"ref"}:
            raise obj.error(path, "must have exactly one of ref, selector")
        api_version, kind, name = ref.get("apiVersion"), ref.get("kind"), ref.get("name")
        if not isinstance(name, str) or not name:
            raise obj.error(f"{path}.ref.name", "required (a string)")
        if (api_version, kind) != _BROKER_REF:
            notices.append(
                f"{obj.source}: {obj.label}: {path}: {field_name(kind)} {field_name(name)} "
                "checks its senders itself; the local broker enforces policies on Brokers"
            )
            continue
        brokers.append(name)
    return tuple(brokers)


def _subjects(obj: KubeObject, raw: object) -> tuple[str, ...]:
    if raw is None:
        raise obj.error("spec.from", "required: at least one sub or ref")
    subjects: list[str] = []
    for index, entry in enumerate(_entries(obj, raw, "spec.from")):
        path = f"spec.from[{index}]"
        if set(entry) == {"sub"} and isinstance(entry["sub"], str) and entry["sub"]:
            subjects.append(entry["sub"])
        elif set(entry) == {"ref"} and isinstance(entry["ref"], dict):
            subjects.append(_ref_subject(obj, entry["ref"], f"{path}.ref"))
        else:
            raise obj.error(path, "must have exactly one of sub (a string), ref (a mapping)")
    if not subjects:
        raise obj.error("spec.from", "required: at least one sub or ref")
    return tuple(subjects)


def _ref_subject(obj: KubeObject, ref: dict[str, Any], path: str) -> str:
    values = {key: ref.get(key) for key in ("apiVersion", "kind", "name", "namespace")}
    for key in ("apiVersion", "kind", "name"):
        if not isinstance(values[key], str) or not values[key]:
            raise obj.error(f"{path}.{key}", "required (a string)")
    namespace = values["namespace"] or obj.namespace
    group = str(values["apiVersion"]).rpartition("/")[0]
    account = knative_child_name(str(values["name"]), f"-oidc-{group}-{values['kind']}").lower()
    return f"system:serviceaccount:{namespace}:{account}"

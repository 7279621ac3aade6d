"""Bad values are refused, by values.schema.json or by the chart's own cross-value checks, with
the message a user sees from `helm template` / `helm lint` / `helm install`; every value is
documented with `## @param`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.support import CHART, helm, helm_error

VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"
SCHEMA_ERROR = "values don't meet the specifications of the schema(s)"

# (--set assignments, what the user must read)
REFUSED_SETS = [
    (["bogus=1"], [SCHEMA_ERROR, "(root): Additional property bogus is not allowed"]),
    (
        ["functions.order.containerConcurrency=-1"],
        ["functions.order.containerConcurrency: Must be greater than or equal to 0"],
    ),
    (
        ["functions.order.consumes.payment-declined.delivery.timeout=30s"],
        ["functions.order.consumes.payment-declined.delivery.timeout: Does not match pattern"],
    ),
    (
        ["functions.order.consumes.payment-declined.delivery.backoffPolicy=random"],
        ['backoffPolicy must be one of the following: "exponential", "linear"'],
    ),
    (
        ["functions.order.consumes.payment-declined.delivery.deadLetterSink=x"],
        ["functions.order.consumes.payment-declined.delivery: Additional property deadLetterSink"],
    ),
    (
        ["functions.Bad_Name.image.repository=x"],
        ['functions: Property name of "Bad_Name" does not match'],
    ),
    (
        ["functions.order.consumes.foo.ordered=true"],
        ["functions.order.consumes.foo: type is required"],
    ),
    (["functions.order.scaling.maxScale=many"], ["functions.order.scaling.maxScale: Invalid type"]),
    (["functions.order.resources.limits.memory=lots"], ["functions.order.resources.limits.memory"]),
    (["image.pullPolicy=Sometimes"], ['image.pullPolicy must be one of the following: "Always"']),
    (
        ["sink.mode=carrier-pigeon"],
        ['sink.mode must be one of the following: "sinkBinding", "env"'],
    ),
    (["kafka.topic.partitions=0"], ["kafka.topic.partitions: Must be greater than or equal to 1"]),
    (["kafka.strimzi.storage.type=tape"], ["kafka.strimzi.storage.type must be one of"]),
    (["kafka.bootstrapServers=not a host"], ["kafka.bootstrapServers: Does not match pattern"]),
    (
        ["observability.tracing.samplerArg=2"],
        ["observability.tracing.samplerArg: Must be less than"],
    ),
    (["functionDefaults.bogus=1"], ["functionDefaults: Additional property bogus is not allowed"]),
    (["functions.order.bogus=1"], ["functions.order: Additional property bogus is not allowed"]),
    (["tests.timeoutSeconds=1"], ["tests.timeoutSeconds: Must be greater than or equal to 10"]),
    (["networkPolicy.ingressNamespaces=null"], ["networkPolicy: ingressNamespaces is required"]),
    # checks across values, made by the chart's templates (templates/_helpers.tpl)
    (
        ["kafka.strimzi.enabled=false"],
        ["kafka.bootstrapServers: required when kafka.strimzi.enabled is false"],
    ),
    (
        ["kafka.bootstrapServers=kafka:9092"],
        ["kafka.bootstrapServers: set it only with kafka.strimzi.enabled=false"],
    ),
    (
        ["deadLetterSink.function=nope"],
        ['deadLetterSink.function: "nope" is not a key of functions (have: dead-letter, inventory'],
    ),
    (
        ["functions.order.scaling.minScale=5"],
        ["functions.order.scaling.minScale: 5 is more than maxScale 3"],
    ),
    (
        ["kafka.topic.replicationFactor=3"],
        ["kafka.topic.replicationFactor: 3 is more than the 1 Kafka node(s)"],
    ),
    (
        ["functions.order.consumes.loop.type=com.example.shop.order.confirmed"],
        ["would receive its own replies forever"],
    ),
    (
        ["database.secretName="],
        ["scaling.maxScale: must be 1 without a database (database.secretName is empty"],
    ),
    (
        ["functions.order.env.DB_PASSWORD=hunter2"],
        ["functions.order.env.DB_PASSWORD: looks like a secret", "secretEnv"],
    ),
    (["functions.payment.env.PORT=9000"], ["functions.payment.env.PORT: set by the chart itself"]),
    (
        ["tests.orderFunction=payment"],
        ['tests.orderFunction: "payment" must be public (functions.payment.public=true)'],
    ),
    (["functions.order.public=false"], ['tests.orderFunction: "order" must be public']),
    (
        [
            "functions.queue-proxy.image.repository=x",
            "functions.queue-proxy.scaling.maxScale=1",
        ],
        ["functions.queue-proxy: the name is reserved by Knative"],
    ),
]


@pytest.mark.parametrize(
    ("assignments", "messages"), REFUSED_SETS, ids=[" ".join(a) for a, _ in REFUSED_SETS]
)
def test_helm_template_refuses_bad_values(
    tools: Path, assignments: list[str], messages: list[str]
) -> None:
    args = ["template", "x", str(CHART)]
    for assignment in assignments:
        args += ["--set", assignment]
    stderr = helm_error(*args)
    for message in messages:
        assert message in stderr


# values files: what `--set` cannot express. `helm lint` fails on schema errors; the chart's
# own checks (`fail` in templates) are only reported by lint as INFO lines, while `helm
# template` and `helm install` refuse them.
REFUSED_FILES: list[tuple[str, dict[str, Any], str]] = [
    (
        "function without image",
        {"functions": {"cart": {"consumes": {}}}},
        "functions.cart: image is required",
    ),
    (
        "Trigger names that collide",
        {
            "functions": {
                "a": {"image": {"repository": "a"}, "consumes": {"b-c": {"type": "t1"}}},
                "a-b": {"image": {"repository": "ab"}, "consumes": {"c": {"type": "t2"}}},
            }
        },
        'Trigger name "a-b-c" is also made by functions.a.consumes.b-c',
    ),
    (
        "a filter with two dialects",
        {
            "functions": {
                "order": {
                    "consumes": {
                        "x": {"type": "t", "filters": [{"exact": {"a": "b"}, "prefix": {"a": "b"}}]}
                    }
                }
            }
        },
        "Must have at most 1 properties",
    ),
    (
        "type given twice",
        {"functions": {"order": {"consumes": {"x": {"type": "t", "attributes": {"type": "u"}}}}}},
        "functions.order.consumes.x.attributes",
    ),
    (
        "uppercase EventType",
        {"eventTypes": [{"type": "Com.Example.Thing", "source": "/x"}]},
        "eventTypes.0.type",
    ),
    (
        "a function name too long for Knative's revision names",
        {"functions": {"a" * 50: {"image": {"repository": "x"}}}},
        "String length must be less than or equal to 49",
    ),
]


@pytest.mark.parametrize(
    ("values", "message"),
    [(v, m) for _, v, m in REFUSED_FILES],
    ids=[name for name, _, _ in REFUSED_FILES],
)
def test_bad_values_files_are_refused(
    tools: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    assert message in helm_error("template", "x", str(CHART), "-f", str(path))
    lint = helm("lint", "--strict", str(CHART), "-f", str(path))
    assert message in lint.stdout + lint.stderr
    if SCHEMA_ERROR in helm_error("template", "x", str(CHART), "-f", str(path)):
        assert lint.returncode != 0


def test_the_schema_forbids_unknown_keys_everywhere() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    loose: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            closed = node.get("additionalProperties") is False
            if node.get("type") == "object" and "properties" in node and not closed:
                loose.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "#")
    # functionSettings is a mixin: `function` and `functionDefaults` add it to their own closed
    # property lists (tested: functionDefaults.bogus and functions.order.bogus are refused)
    assert loose == ["#/definitions/functionSettings"]
    assert schema["additionalProperties"] is False


# maps and lists documented as a whole by one `## @param` line
WHOLE = {
    "commonLabels",
    "broker.annotations",
    "functionDefaults.env",
    "networkPolicy.dns.podLabels",
    "observability.metrics.podMonitor.labels",
    "observability.metrics.rules.labels",
    "observability.dashboards.labels",
    "observability.metrics.scraperNamespaces",
    "networkPolicy.ingressNamespaces",
    "eventTypes",
    "functions.NAME.env",
    "functions.NAME.secretEnv",
    "functions.NAME.consumes",
    "functions.NAME.replyTypes",
}


def _leaf_paths(node: Any, prefix: str = "") -> set[str]:
    """Dotted paths of the values' leaves; each function's key is written NAME."""
    if prefix in WHOLE or not isinstance(node, dict):
        return {prefix}
    paths: set[str] = set()
    for key, value in node.items():
        name = "NAME" if prefix == "functions" else str(key)
        paths |= _leaf_paths(value, f"{prefix}.{name}" if prefix else name)
    return paths


def test_every_value_is_documented_with_a_param_line() -> None:
    text = VALUES.read_text(encoding="utf-8")
    documented = set(re.findall(r"^## @param (\S+) ", text, flags=re.M))
    leaves = _leaf_paths(yaml.safe_load(text))
    missing = sorted(leaf for leaf in leaves if leaf not in documented)
    assert missing == []
    # a function's own keys: those of the schema that are not functionDefaults settings
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))["definitions"]
    settings = set(schema["functionSettings"]["properties"])
    own = {f"functions.NAME.{k}" for k in set(schema["function"]["properties"]) - settings}
    own = {p for p in own if p != "functions.NAME.image"} | {
        "functions.NAME.image.repository",
        "functions.NAME.image.tag",
    }
    assert sorted(own - documented) == []
    unknown = sorted(p for p in documented if p not in leaves | own)
    assert unknown == [], "## @param lines for values that do not exist"

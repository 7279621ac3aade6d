"""The manifest loader: Knative Broker/Trigger/Service YAML to a Topology, checked as admission."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from cascade.broker.topology import ManifestError, ServiceConfig, Topology, load_topology
from cascade.broker.topology.delivery_spec import MAX_BACKOFF_SECONDS, DeliverySpec
from cascade.broker.topology.yaml_reader import MAX_DOCUMENTS_PER_FILE, MAX_FILE_BYTES

FIXTURES = Path(__file__).parent / "manifests"
ORDER = "kafka.eventing.knative.dev/delivery.order"
PAYMENT_REF = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "payment"}


# --- helpers ------------------------------------------------------------------------------


def broker(name: str = "default", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "annotations": {"eventing.knative.dev/broker.class": "Kafka"},
    }
    if namespace:
        metadata["namespace"] = namespace
    doc: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": metadata,
    }
    if spec:
        doc["spec"] = spec
    return doc


def trigger(
    name: str = "orders",
    *,
    namespace: str | None = None,
    annotations: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    spec.setdefault("broker", "default")
    spec.setdefault("subscriber", {"uri": "http://127.0.0.1:8080/"})
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": metadata,
        "spec": spec,
    }


def service(
    name: str = "payment",
    *,
    namespace: str | None = None,
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = annotations
    doc: dict[str, Any] = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}},
    }
    if status is not None:
        doc["status"] = status
    return doc


def write(directory: Path, *docs: object, name: str = "m.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def load(directory: Path, *docs: object, **kwargs: Any) -> Topology:
    return load_topology([write(directory, *docs)], **kwargs)


def load_error(directory: Path, *docs: object, **kwargs: Any) -> ManifestError:
    path = write(directory, *docs)
    with pytest.raises(ManifestError) as info:
        load_topology([path], **kwargs)
    assert info.value.file == str(path)
    assert str(info.value).startswith(f"{path}")
    return info.value


def only_trigger(topology: Topology) -> Any:
    assert len(topology.triggers) == 1
    return topology.triggers[0]


# --- a whole file -------------------------------------------------------------------------


def test_shop_fixture_loads_into_a_topology() -> None:
    path = FIXTURES / "shop.yaml"
    topology = load_topology(
        [path],
        service_urls={
            ("shop", "payment"): "http://127.0.0.1:8101",
            ("shop", "dead-letter"): "http://127.0.0.1:8102",
        },
    )
    assert set(topology.brokers) == {("shop", "default")}
    default = topology.brokers[("shop", "default")]
    assert default.source == str(path)
    assert default.delivery == DeliverySpec(
        retry=5,
        backoff_policy="linear",
        backoff_delay=0.5,
        dead_letter_sink="http://127.0.0.1:8102",
        dead_letter_audience="serving.knative.dev/service/shop/dead-letter",
    )
    payment, audit = topology.triggers
    assert (payment.namespace, payment.name, payment.broker) == (
        "shop",
        "payment-inventory-reserved",
        "default",
    )
    assert payment.subscriber == "http://127.0.0.1:8101"
    assert payment.subscriber_service == ServiceConfig(
        "shop",
        "payment",
        "http://127.0.0.1:8101",
        ("com.example.shop.payment.captured", "com.example.shop.payment.failed"),
    )
    assert payment.ordered is True
    assert payment.group == "knative-trigger-shop-payment-inventory-reserved"
    assert payment.delivery == default.delivery  # no delivery of its own: the Broker's (§3.2)
    assert payment.filter_spec == {
        "filter": {"attributes": {"type": "com.example.shop.inventory.reserved"}}
    }
    assert payment.filter.matches({"type": "com.example.shop.inventory.reserved"})
    assert not payment.filter.matches({"type": "com.example.shop.order.created"})
    assert payment.source == str(path)

    assert audit.subscriber == "http://127.0.0.1:9999/audit"
    assert audit.subscriber_service is None
    assert audit.ordered is False
    # Its own delivery, with only a timeout, replaces the Broker's whole: no retries, no DLS.
    assert audit.delivery == DeliverySpec(timeout=30.0)
    assert audit.filter_spec == {"filters": [{"prefix": {"type": "com.example.shop."}}]}
    assert audit.filter.matches({"type": "com.example.shop.anything"})

    assert set(topology.services) == {("shop", "payment"), ("shop", "dead-letter")}
    assert topology.notices == (f"ignored kind ConfigMap 'kafka-broker-config' in {path}",)
    assert topology.triggers_for("shop", "default") == (payment, audit)
    assert topology.triggers_for("shop", "other") == ()
    assert topology.triggers_for("default", "default") == ()


def test_fixture_without_service_urls_fails_on_the_unresolvable_dead_letter_sink() -> None:
    with pytest.raises(ManifestError) as info:
        load_topology([FIXTURES / "shop.yaml"])
    err = info.value
    assert (err.obj, err.field) == ("Broker shop/default", "spec.delivery.deadLetterSink.ref")
    assert "Service shop/dead-letter cannot be resolved" in str(err)


def test_documents_spread_over_files_and_directories(tmp_path: Path) -> None:
    one = tmp_path / "one"
    two = tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write(one, broker(), name="a-broker.yaml")
    write(one, trigger("t1"), trigger("t2"), name="b-triggers.yml")
    (one / "README.md").write_text("not a manifest")
    (two / "c.json").write_text(
        '{"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",'
        ' "metadata": {"name": "t3"},'
        ' "spec": {"broker": "default", "subscriber": {"uri": "http://127.0.0.1:1/"}}}'
    )
    topology = load_topology([one, two / "c.json"])
    assert [t.name for t in topology.triggers] == ["t1", "t2", "t3"]
    assert topology.triggers[2].source == str(two / "c.json")
    assert topology.notices == ()


def test_a_kind_list_is_read_item_by_item(tmp_path: Path) -> None:
    topology = load(tmp_path, {"apiVersion": "v1", "kind": "List", "items": [broker(), trigger()]})
    assert only_trigger(topology).name == "orders"


def test_empty_documents_and_comments_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("# only a comment\n---\n---\n" + yaml.safe_dump(broker()) + "---\n")
    topology = load_topology([path])
    assert list(topology.brokers) == [("default", "default")]


def test_an_empty_directory_gives_a_notice(tmp_path: Path) -> None:
    topology = load_topology([tmp_path])
    assert topology.brokers == {}
    assert topology.notices == (f"no .yaml/.yml/.json files in directory {tmp_path}",)


# --- identity, namespaces, duplicates, unknown kinds ----------------------------------------


def test_namespace_defaults_to_default(tmp_path: Path) -> None:
    topology = load(
        tmp_path, broker(), trigger(), broker(namespace="team"), trigger(namespace="team")
    )
    assert set(topology.brokers) == {("default", "default"), ("team", "default")}
    assert [(t.namespace, t.group) for t in topology.triggers] == [
        ("default", "knative-trigger-default-orders"),
        ("team", "knative-trigger-team-orders"),
    ]


def test_a_duplicate_object_names_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, broker(), trigger(), name="first.yaml")
    second = write(tmp_path, trigger(), name="second.yaml")
    with pytest.raises(ManifestError) as info:
        load_topology([first, second])
    message = str(info.value)
    assert message.startswith(f"{second}: Trigger default/orders: metadata.name: duplicate")
    assert str(first) in message


def test_same_name_in_other_kind_or_namespace_is_not_a_duplicate(tmp_path: Path) -> None:
    topology = load(
        tmp_path,
        broker("orders"),
        trigger("orders", broker="orders"),
        broker("orders", namespace="other"),
        trigger("orders", namespace="other", broker="orders"),
        service("orders", annotations={"cascade.dev/url": "http://127.0.0.1:1"}),
    )
    assert len(topology.triggers) == 2


def test_unknown_kinds_are_ignored_with_a_notice(tmp_path: Path) -> None:
    core_service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"}}
    source = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": "p"},
    }
    path = write(tmp_path, core_service, broker(), source)
    topology = load_topology([path])
    assert list(topology.brokers) == [("default", "default")]
    assert topology.notices == (
        f"ignored kind Service 'db' (apiVersion v1) in {path}",
        f"ignored kind PingSource 'p' in {path}",
    )


def test_an_old_apiversion_of_a_known_kind_is_an_error(tmp_path: Path) -> None:
    doc = trigger()
    doc["apiVersion"] = "eventing.knative.dev/v1beta1"
    err = load_error(tmp_path, broker(), doc)
    assert (err.obj, err.field) == ("Trigger default/orders", "apiVersion")
    assert "use 'eventing.knative.dev/v1'" in err.message


@pytest.mark.parametrize(
    "name",
    ["Orders", "orders_v2", "-orders", "orders-", "a" * 254, "orders..v2", "ordérs"],
)
def test_invalid_trigger_and_broker_names_are_rejected(tmp_path: Path, name: str) -> None:
    err = load_error(tmp_path, broker(), trigger(name))
    assert err.field == "metadata.name"
    assert "is not a valid Trigger name" in err.message
    err = load_error(tmp_path, broker(name))
    assert err.field == "metadata.name"
    assert "is not a valid Broker name" in err.message


@pytest.mark.parametrize("name", ["orders", "orders-v2", "a", "0rders", "orders.v2", "a" * 253])
def test_valid_names_are_accepted(tmp_path: Path, name: str) -> None:
    assert only_trigger(load(tmp_path, broker(), trigger(name))).name == name


def test_service_names_must_be_dns_labels(tmp_path: Path) -> None:
    err = load_error(tmp_path, service("pay.ment"))
    assert (err.obj, err.field) == ("Service default/pay.ment", "metadata.name")
    assert "at most 63" in err.message


def test_an_invalid_namespace_is_rejected(tmp_path: Path) -> None:
    err = load_error(tmp_path, broker(namespace="Team_A"))
    assert err.field == "metadata.namespace"
    assert "'Team_A' is not a valid namespace" in err.message


# --- YAML-level errors ----------------------------------------------------------------------


def write_text(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def text_error(tmp_path: Path, text: str) -> ManifestError:
    path = write_text(tmp_path, text)
    with pytest.raises(ManifestError) as info:
        load_topology([path])
    assert str(info.value).startswith(str(path))
    return info.value


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    err = text_error(tmp_path, yaml.safe_dump(broker()) + "---\nkind: Trigger\n  name: x\n")
    assert err.line is not None
    assert err.line >= 7  # the second document, not the first
    assert str(err).startswith(f"{tmp_path / 'm.yaml'}:{err.line}:")
    assert "invalid YAML" in err.message


def test_a_document_that_is_not_a_mapping_is_an_error_with_its_line(tmp_path: Path) -> None:
    first = yaml.safe_dump(broker())
    err = text_error(tmp_path, first + "---\n- just\n- a list\n")
    assert err.line == first.count("\n") + 2  # the line after the '---'

    assert "document 2 must be a Kubernetes object (a mapping), got a list" in err.message


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"kind": "Trigger", "metadata": {"name": "x"}}, "apiVersion is required"),
        ({"apiVersion": "eventing.knative.dev/v1", "metadata": {"name": "x"}}, "kind is required"),
        ({"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger"}, "metadata is required"),
        (
            {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {}},
            "metadata.name is required",
        ),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "x-"}},
            "metadata.name is required",
        ),
        ({"apiVersion": "v1", "kind": "List", "items": ["x"]}, "items[0] must be a Kubernetes"),
    ],
)
def test_objects_without_identity_are_rejected(tmp_path: Path, doc: object, needle: str) -> None:
    err = load_error(tmp_path, doc)
    assert err.line == 1
    assert needle in err.message


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ManifestError, match="file not found") as info:
        load_topology([missing])
    assert info.value.file == str(missing)


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    with pytest.raises(ManifestError, match="larger than 10 MiB"):
        load_topology([path])


def test_text_that_is_not_utf8_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(b"a: 1\nb: \xff\xfe\n")
    with pytest.raises(ManifestError, match="not UTF-8") as info:
        load_topology([path])
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[" * 5000 + "]" * 5000, "nested deeper than 64 levels"),
        ("- " * 5000 + "x", "nested deeper than 64 levels"),
        ("a: &a [*a]\n", "refers to itself"),
        (
            # "billion laughs": nine levels of ten-fold aliases
            "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)),
            "expands to more than",
        ),
        ("a: 2024-02-30\n", "invalid YAML value"),
        ("a: !!int x\n", "invalid YAML value"),
        ("a: !!int\n", "does not fit its explicit tag"),
        ("a: !!bool maybe\n", "does not fit its explicit tag"),
        ("a: !!timestamp soon\n", "does not fit its explicit tag"),
        ("a: !!python/object/apply:os.system [true]\n", "invalid YAML"),
        ("a: \x00\n", "character U+0000 is not allowed"),
    ],
)
def test_hostile_yaml_fails_fast_with_a_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    err = text_error(tmp_path, text)
    assert needle in err.message
    assert err.line == 1


def test_too_many_documents_are_refused(tmp_path: Path) -> None:
    err = text_error(tmp_path, "---\n" * (MAX_DOCUMENTS_PER_FILE + 1))
    assert f"more than {MAX_DOCUMENTS_PER_FILE} YAML documents" in err.message


def test_a_key_given_twice_is_an_error_with_its_line(tmp_path: Path) -> None:
    text = (
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: a}\n"
        "spec:\n  broker: default\n  delivery: {retry: 1}\n  delivery: {retry: 2}\n"
    )
    err = text_error(tmp_path, text)
    assert (err.line, err.column) == (7, 3)
    assert "found duplicate key 'delivery'" in err.message


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = (
        yaml.safe_dump(broker())
        + "---\n"
        + "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: a}\n"
        + "spec: &spec\n  broker: default\n  subscriber: {uri: 'http://127.0.0.1:1/'}\n"
        + "---\n"
        + "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: b}\n"
        + "spec:\n  <<: {broker: default, subscriber: {uri: 'http://127.0.0.1:1/'}}\n"
        + "  subscriber: {uri: 'http://127.0.0.1:2/'}\n"
    )
    topology = load_topology([write_text(tmp_path, text)])
    assert [t.subscriber for t in topology.triggers] == [
        "http://127.0.0.1:1/",
        "http://127.0.0.1:2/",
    ]


def test_anchors_and_merge_keys_within_limits_work(tmp_path: Path) -> None:
    text = (
        yaml.safe_dump(broker())
        + "---\n"
        + "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: a}\n"
        + "spec: &spec\n  broker: default\n  subscriber: {uri: 'http://127.0.0.1:1/'}\n"
        + "  delivery: &d {retry: 3}\n"
        + "---\n"
        + "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: b}\n"
        + "spec:\n  broker: default\n  subscriber: {uri: 'http://127.0.0.1:2/'}\n"
        + "  delivery: {retry: 4, backoffPolicy: linear}\n"
    )
    topology = load_topology([write_text(tmp_path, text)])
    assert [t.delivery.retry for t in topology.triggers] == [3, 4]


# --- Brokers ----------------------------------------------------------------------------------


def test_a_broker_without_delivery_gets_config_br_defaults(tmp_path: Path) -> None:
    topology = load(tmp_path, broker(), trigger())
    expected = DeliverySpec(retry=10, backoff_policy="exponential", backoff_delay=0.2)
    assert topology.brokers[("default", "default")].delivery == expected
    assert only_trigger(topology).delivery == expected


def test_a_broker_delivery_is_not_merged_with_the_defaults(tmp_path: Path) -> None:
    topology = load(tmp_path, broker(delivery={"backoffPolicy": "linear"}))
    # retry stays 0: the webhook only defaults a Broker that has no delivery at all
    assert topology.brokers[("default", "default")].delivery == DeliverySpec(
        retry=0, backoff_policy="linear", backoff_delay=0.2, timeout=600.0
    )


@pytest.mark.parametrize(
    ("annotations", "notice"),
    [
        ({"eventing.knative.dev/broker.class": "Kafka"}, None),
        ({"eventing.knative.dev/broker.class": "KafkaNamespaced"}, None),
        (None, "no eventing.knative.dev/broker.class annotation; Kafka class semantics are used"),
        (
            {"eventing.knative.dev/broker.class": "MTChannelBasedBroker"},
            "class 'MTChannelBasedBroker' is not emulated; Kafka class semantics are used",
        ),
    ],
)
def test_broker_class(
    tmp_path: Path, annotations: dict[str, str] | None, notice: str | None
) -> None:
    doc = broker()
    if annotations is None:
        del doc["metadata"]["annotations"]
    else:
        doc["metadata"]["annotations"] = annotations
    path = write(tmp_path, doc)
    topology = load_topology([path])
    assert ("default", "default") in topology.brokers
    expected = () if notice is None else (f"{path}: Broker default/default: {notice}",)
    assert topology.notices == expected


def test_an_unknown_broker_spec_field_is_rejected(tmp_path: Path) -> None:
    err = load_error(tmp_path, broker(delivry={"retry": 3}))
    assert (err.obj, err.field) == ("Broker default/default", "spec.delivry")
    assert "unknown field" in err.message


def test_broker_config_reference_is_accepted(tmp_path: Path) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "name": "kafka-broker-config"}
    assert load(tmp_path, broker(config=config)).brokers


# --- delivery (§3.1, §3.2) ------------------------------------------------------------------


def test_a_trigger_with_only_a_dead_letter_sink_gets_zero_retries(tmp_path: Path) -> None:
    topology = load(
        tmp_path,
        broker(delivery={"retry": 7, "backoffDelay": "PT1S"}),
        trigger(delivery={"deadLetterSink": {"uri": "http://127.0.0.1:7/dls"}}),
    )
    assert only_trigger(topology).delivery == DeliverySpec(
        retry=0, dead_letter_sink="http://127.0.0.1:7/dls"
    )


def test_a_trigger_without_delivery_takes_the_brokers_whole(tmp_path: Path) -> None:
    broker_delivery = {
        "retry": 2,
        "backoffPolicy": "linear",
        "backoffDelay": "PT3S",
        "timeout": "PT10S",
        "deadLetterSink": {"uri": "https://dls.example/x"},
    }
    topology = load(tmp_path, broker(delivery=broker_delivery), trigger())
    assert only_trigger(topology).delivery == DeliverySpec(
        retry=2,
        backoff_policy="linear",
        backoff_delay=3.0,
        timeout=10.0,
        dead_letter_sink="https://dls.example/x",
    )


def test_an_empty_trigger_delivery_still_replaces_the_brokers(tmp_path: Path) -> None:
    topology = load(tmp_path, broker(), trigger(delivery={}))
    assert only_trigger(topology).delivery == DeliverySpec()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT0.2S", 0.2), ("PT30S", 30.0), ("PT1.5M", 90.0), ("P1DT2H", 93600.0), ("P1W", 604800.0)],
)
def test_iso8601_durations(tmp_path: Path, text: str, seconds: float) -> None:
    delivery = only_trigger(
        load(tmp_path, broker(), trigger(delivery={"backoffDelay": text, "timeout": text}))
    ).delivery
    assert delivery.backoff_delay == pytest.approx(seconds)
    assert delivery.timeout == pytest.approx(seconds)


def test_zero_backoff_delay_is_allowed(tmp_path: Path) -> None:
    delivery = only_trigger(
        load(tmp_path, broker(), trigger(delivery={"retry": 2, "backoffDelay": "PT0S"}))
    ).delivery
    assert delivery.backoff_delay == 0
    assert delivery.backoff(1) == delivery.backoff(2) == 0


@pytest.mark.parametrize(
    ("delivery", "field", "needle"),
    [
        ({"retry": -1}, "retry", "must be an integer >= 0"),
        ({"retry": True}, "retry", "got boolean true"),
        ({"retry": "3"}, "retry", "got '3'"),
        ({"retry": 1.5}, "retry", "got 1.5"),
        ({"retry": 2**31}, "retry", "int32"),
        ({"backoffPolicy": "Linear"}, "backoffPolicy", "must be 'linear' or 'exponential'"),
        ({"backoffDelay": "PT-1"}, "backoffDelay", "'PT-1' is not an ISO-8601 duration"),
        ({"backoffDelay": "0.2s"}, "backoffDelay", "'0.2s' is not an ISO-8601 duration"),
        ({"backoffDelay": "PT"}, "backoffDelay", "is not an ISO-8601 duration"),
        ({"backoffDelay": 5}, "backoffDelay", "must be an ISO-8601 duration string"),
        ({"backoffDelay": "-PT1S"}, "backoffDelay", "must not be negative"),
        ({"backoffDelay": "P1M"}, "backoffDelay", "years or months"),
        ({"backoffDelay": "P1Y"}, "backoffDelay", "years or months"),
        ({"backoffDelay": "P" + "9" * 30 + "D"}, "backoffDelay", "is not an ISO-8601 duration"),
        ({"timeout": "PT0S"}, "timeout", "must be greater than 0"),
        ({"timeout": "-PT5S"}, "timeout", "must be greater than 0"),
        ({"timeout": "soon"}, "timeout", "is not an ISO-8601 duration"),
        ({"retryAfterMax": "PT10S"}, "retryAfterMax", "delivery-retryafter feature is off"),
        ({"format": "xml"}, "format", "must be 'json' or 'binary'"),
        ({"retries": 3}, "retries", "unknown field"),
        ({"deadLetterSink": {}}, "deadLetterSink", "expected at least one of ref, uri"),
        ({"deadLetterSink": {"uri": "/dls"}}, "deadLetterSink.uri", "a relative URI needs a ref"),
        ({"deadLetterSink": "http://x/"}, "deadLetterSink", "must be a mapping"),
    ],
)
def test_invalid_trigger_delivery_is_rejected(
    tmp_path: Path, delivery: dict[str, Any], field: str, needle: str
) -> None:
    err = load_error(tmp_path, broker(), trigger(delivery=delivery))
    assert err.obj == "Trigger default/orders"
    assert err.field == f"spec.delivery.{field}"
    assert needle in err.message
    assert str(err) == f"{err.file}: Trigger default/orders: spec.delivery.{field}: {err.message}"


def test_the_error_message_of_the_issue(tmp_path: Path) -> None:
    err = load_error(tmp_path, broker(), trigger(delivery={"backoffDelay": "PT-1"}))
    assert str(err) == (
        f"{err.file}: Trigger default/orders: spec.delivery.backoffDelay: "
        "'PT-1' is not an ISO-8601 duration (e.g. 'PT0.2S')"
    )


def test_invalid_broker_delivery_is_rejected_with_the_broker_named(tmp_path: Path) -> None:
    err = load_error(tmp_path, broker(delivery={"retry": -3}))
    assert (err.obj, err.field) == ("Broker default/default", "spec.delivery.retry")


def test_delivery_must_be_a_mapping(tmp_path: Path) -> None:
    err = load_error(tmp_path, broker(), trigger(delivery=[1]))
    assert err.field == "spec.delivery"
    assert "must be a mapping" in err.message


@pytest.mark.parametrize("value", ["json", "binary"])
def test_format_is_accepted_but_ignored_with_a_notice(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, broker(), trigger(delivery={"format": value}))
    topology = load_topology([path])
    assert only_trigger(topology).delivery == DeliverySpec()
    assert topology.notices == (
        f"{path}: Trigger default/orders: spec.delivery: format {value!r} is ignored: "
        "the Kafka broker always delivers in binary mode",
    )


# --- backoff formula (§3.4) -------------------------------------------------------------------


def test_backoff_worked_example_of_the_kafka_default_broker() -> None:
    spec = DeliverySpec(retry=10, backoff_policy="exponential", backoff_delay=0.2)
    waits = [spec.backoff(n) for n in range(1, spec.retry + 1)]
    expected = [0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8]
    assert waits == pytest.approx(expected)
    assert sum(waits) == pytest.approx(409.2)


def test_linear_backoff_is_delay_times_retry_number() -> None:
    spec = DeliverySpec(retry=4, backoff_policy="linear", backoff_delay=0.5)
    assert [spec.backoff(n) for n in range(1, 5)] == pytest.approx([0.5, 1.0, 1.5, 2.0])


@pytest.mark.parametrize("policy", ["linear", "exponential"])
def test_backoff_delay_of_zero_or_less_retries_at_once(policy: Any) -> None:
    for delay in (0.0, -1.0):
        spec = DeliverySpec(retry=3, backoff_policy=policy, backoff_delay=delay)
        assert [spec.backoff(n) for n in (1, 2, 3)] == [0.0, 0.0, 0.0]


def test_backoff_stays_finite_for_huge_retry_numbers() -> None:
    exponential = DeliverySpec(retry=2**31 - 1, backoff_delay=0.2)
    linear = DeliverySpec(retry=2**31 - 1, backoff_policy="linear", backoff_delay=86400.0)
    for spec, retry_numbers in ((exponential, (60, 1100, 1101)), (linear, (20_000,))):
        for n in (*retry_numbers, 2**31 - 1):
            wait = spec.backoff(n)
            assert math.isfinite(wait)
            assert wait == MAX_BACKOFF_SECONDS
    assert linear.backoff(60) == 86400.0 * 60
    assert exponential.backoff(20) == pytest.approx(0.2 * 2**20)
    tiny = DeliverySpec(retry=2000, backoff_delay=5e-324)
    assert tiny.backoff(2000) == MAX_BACKOFF_SECONDS
    assert tiny.backoff(1) == 1e-323


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        DeliverySpec().backoff(0)


# --- Triggers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "ordered"), [(None, False), ("unordered", False), ("ordered", True)]
)
def test_delivery_order_annotation(tmp_path: Path, annotation: str | None, ordered: bool) -> None:
    annotations = None if annotation is None else {ORDER: annotation}
    assert (
        only_trigger(load(tmp_path, broker(), trigger(annotations=annotations))).ordered is ordered
    )


@pytest.mark.parametrize("value", ["Ordered", "", "fifo", True])
def test_an_invalid_delivery_order_is_rejected(tmp_path: Path, value: object) -> None:
    err = load_error(tmp_path, broker(), trigger(annotations={ORDER: value}))
    assert err.obj == "Trigger default/orders"
    assert err.field == f"metadata.annotations[{ORDER}]"


def test_a_trigger_needs_its_broker_field(tmp_path: Path) -> None:
    doc = trigger()
    del doc["spec"]["broker"]
    err = load_error(tmp_path, broker(), doc)
    assert (err.obj, err.field) == ("Trigger default/orders", "spec.broker")
    assert err.message.startswith("required")


def test_a_trigger_for_an_unknown_broker_is_rejected(tmp_path: Path) -> None:
    err = load_error(tmp_path, broker(), broker("other"), trigger(broker="missing"))
    assert err.field == "spec.broker"
    assert "Broker 'missing' not found in namespace 'default' (loaded: default, other)" in str(err)


def test_a_broker_in_another_namespace_does_not_count(tmp_path: Path) -> None:
    err = load_error(tmp_path, broker(namespace="team"), trigger())
    assert err.field == "spec.broker"
    assert "none is loaded" in err.message


def test_a_trigger_needs_a_spec_and_a_subscriber(tmp_path: Path) -> None:
    doc = trigger()
    del doc["spec"]
    assert load_error(tmp_path, broker(), doc).field == "spec"
    doc = trigger()
    del doc["spec"]["subscriber"]
    err = load_error(tmp_path, broker(), doc)
    assert err.field == "spec.subscriber"
    assert "required" in err.message
    err = load_error(tmp_path, broker(), trigger(subscriber={}))
    assert err.field == "spec.subscriber"
    assert "expected at least one of ref, uri" in err.message


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"subscribers": {"uri": "http://x/"}}, "spec.subscribers"),
        ({"brokerRef": {"name": "default"}}, "spec.brokerRef"),
        ({"subscriber": {"url": "http://x/"}}, "spec.subscriber.url"),
        ({"subscriber": {"ref": {**PAYMENT_REF, "uid": "1"}}}, "spec.subscriber.ref.uid"),
    ],
)
def test_unknown_trigger_fields_are_rejected(
    tmp_path: Path, spec: dict[str, Any], field: str
) -> None:
    err = load_error(tmp_path, broker(), trigger(**spec))
    assert err.field == field


def test_filter_errors_carry_their_field_path(tmp_path: Path) -> None:
    err = load_error(tmp_path, broker(), trigger(filter={"attributes": {"Type": "x"}}))
    assert (err.obj, err.field) == ("Trigger default/orders", "spec.filter.attributes")
    assert "'Type'" in err.message
    assert str(err).startswith(f"{err.file}: Trigger default/orders: spec.filter.attributes: ")

    err = load_error(
        tmp_path, broker(), trigger(filters=[{"exact": {"type": "a"}}, {"exact": {}, "suffix": {}}])
    )
    assert err.field == "spec.filters[1]"
    assert "multiple dialects" in err.message


def test_filters_override_filter_and_the_raw_spec_is_kept_for_display(tmp_path: Path) -> None:
    t = only_trigger(
        load(
            tmp_path,
            broker(),
            trigger(filter={"attributes": {"type": "a"}}, filters=[{"exact": {"type": "b"}}]),
        )
    )
    assert t.filter.matches({"type": "b"})
    assert not t.filter.matches({"type": "a"})
    assert t.filter_spec == {
        "filter": {"attributes": {"type": "a"}},
        "filters": [{"exact": {"type": "b"}}],
    }


def test_no_filter_matches_everything(tmp_path: Path) -> None:
    t = only_trigger(load(tmp_path, broker(), trigger()))
    assert t.filter_spec == {}
    assert t.filter.matches({"type": "anything"})


@pytest.mark.parametrize(
    ("annotations", "field"),
    [
        ({"cascade.dev/reply-types": 3}, "metadata.annotations[cascade.dev/reply-types]"),
        ({1: "x"}, "metadata.annotations"),
    ],
)
def test_annotations_must_be_strings(
    tmp_path: Path, annotations: dict[Any, Any], field: str
) -> None:
    err = load_error(tmp_path, service(annotations=annotations))
    assert err.field == field


# --- destinations and Service resolution ----------------------------------------------------


def full_service() -> dict[str, Any]:
    return service(
        annotations={"cascade.dev/url": "http://annotated:1"},
        status={"url": "http://status-url", "address": {"url": "http://status-address"}},
    )


def resolved(tmp_path: Path, svc: dict[str, Any], **kwargs: Any) -> str:
    topology = load(tmp_path, broker(), svc, trigger(subscriber={"ref": PAYMENT_REF}), **kwargs)
    return str(only_trigger(topology).subscriber)


def test_service_url_resolution_order(tmp_path: Path) -> None:
    urls = {("default", "payment"): "http://127.0.0.1:8101"}
    assert resolved(tmp_path, full_service(), service_urls=urls) == "http://127.0.0.1:8101"
    assert resolved(tmp_path, full_service()) == "http://annotated:1"
    svc = full_service()
    del svc["metadata"]["annotations"]
    assert resolved(tmp_path, svc) == "http://status-address"
    del svc["status"]["address"]
    assert resolved(tmp_path, svc) == "http://status-url"


def test_service_urls_resolve_a_ref_without_a_service_manifest(tmp_path: Path) -> None:
    topology = load(
        tmp_path,
        broker(),
        trigger(subscriber={"ref": PAYMENT_REF}),
        service_urls={("default", "payment"): "http://127.0.0.1:8101"},
    )
    t = only_trigger(topology)
    assert t.subscriber_service == ServiceConfig("default", "payment", "http://127.0.0.1:8101", ())
    assert topology.services == {("default", "payment"): t.subscriber_service}


def test_reply_types_come_from_the_annotation(tmp_path: Path) -> None:
    svc = service(
        annotations={"cascade.dev/reply-types": " a.b , c.d,,", "cascade.dev/url": "http://x"}
    )
    topology = load(tmp_path, svc, service("plain", annotations={"cascade.dev/url": "http://y"}))
    assert topology.services[("default", "payment")].reply_types == ("a.b", "c.d")
    assert topology.services[("default", "plain")].reply_types == ()


def test_a_service_with_no_url_is_not_an_error_until_referenced(tmp_path: Path) -> None:
    topology = load(tmp_path, service())
    assert topology.services == {}
    err = load_error(tmp_path, broker(), service(), trigger(subscriber={"ref": PAYMENT_REF}))
    assert (err.obj, err.field) == ("Trigger default/orders", "spec.subscriber.ref")
    assert "no cascade.dev/url annotation, status.address.url or status.url" in err.message


def test_a_ref_to_a_missing_service_is_rejected(tmp_path: Path) -> None:
    err = load_error(tmp_path, broker(), trigger(subscriber={"ref": PAYMENT_REF}))
    assert err.field == "spec.subscriber.ref"
    assert "Service default/payment cannot be resolved" in err.message
    assert "no such Service in the manifests" in err.message


@pytest.mark.parametrize(
    "ref",
    [
        {"apiVersion": "v1", "kind": "Service", "name": "payment"},
        {"apiVersion": "eventing.knative.dev/v1alpha1", "kind": "KafkaSink", "name": "payment"},
        {"apiVersion": "serving.knative.dev/v1beta1", "kind": "Service", "name": "payment"},
    ],
)
def test_a_ref_to_another_kind_is_rejected(tmp_path: Path, ref: dict[str, str]) -> None:
    urls = {("default", "payment"): "http://127.0.0.1:1"}
    err = load_error(tmp_path, broker(), trigger(subscriber={"ref": ref}), service_urls=urls)
    assert err.field == "spec.subscriber.ref"
    assert "cannot be resolved locally" in err.message


@pytest.mark.parametrize(
    ("ref", "field"),
    [
        ({"kind": "Service", "name": "payment"}, "spec.subscriber.ref.apiVersion"),
        ({"apiVersion": "serving.knative.dev/v1", "name": "payment"}, "spec.subscriber.ref.kind"),
        ({"apiVersion": "serving.knative.dev/v1", "kind": "Service"}, "spec.subscriber.ref.name"),
        ({**PAYMENT_REF, "name": 5}, "spec.subscriber.ref.name"),
        ({**PAYMENT_REF, "namespace": "other"}, "spec.subscriber.ref.namespace"),
        ("payment", "spec.subscriber.ref"),
    ],
)
def test_invalid_refs_are_rejected(tmp_path: Path, ref: object, field: str) -> None:
    urls = {("default", "payment"): "http://127.0.0.1:1"}
    err = load_error(tmp_path, broker(), trigger(subscriber={"ref": ref}), service_urls=urls)
    assert err.field == field


def test_a_ref_may_name_its_own_namespace(tmp_path: Path) -> None:
    urls = {("default", "payment"): "http://127.0.0.1:1"}
    ref = {**PAYMENT_REF, "namespace": "default"}
    assert resolved(tmp_path, service(), service_urls=urls) == "http://127.0.0.1:1"
    topology = load(tmp_path, broker(), trigger(subscriber={"ref": ref}), service_urls=urls)
    assert only_trigger(topology).subscriber == "http://127.0.0.1:1"


@pytest.mark.parametrize(
    ("base", "uri", "url"),
    [
        ("http://127.0.0.1:8101", "/orders", "http://127.0.0.1:8101/orders"),
        ("http://127.0.0.1:8101", "orders?x=1", "http://127.0.0.1:8101/orders?x=1"),
        ("http://127.0.0.1:8101/", "a/b", "http://127.0.0.1:8101/a/b"),
    ],
)
def test_a_relative_uri_beside_a_ref_is_resolved_against_it(
    tmp_path: Path, base: str, uri: str, url: str
) -> None:
    topology = load(
        tmp_path,
        broker(),
        trigger(subscriber={"ref": PAYMENT_REF, "uri": uri}),
        service_urls={("default", "payment"): base},
    )
    t = only_trigger(topology)
    assert t.subscriber == url
    assert t.subscriber_service is not None
    assert t.subscriber_service.url == base


def test_an_absolute_uri_beside_a_ref_is_rejected(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        broker(),
        trigger(subscriber={"ref": PAYMENT_REF, "uri": "http://elsewhere/"}),
        service_urls={("default", "payment"): "http://127.0.0.1:1"},
    )
    assert err.field == "spec.subscriber.uri"
    assert "not allowed when ref is present" in err.message


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("/orders", "a relative URI needs a ref"),
        ("ftp://host/x", "is not an absolute http(s) URL"),
        ("http:///nohost", "is not an absolute http(s) URL"),
        ("http://[::1", "is not a URL"),
        ("http://host:99999/", "invalid port"),
        (42, "must be a string"),
    ],
)
def test_a_uri_alone_must_be_absolute_http(tmp_path: Path, uri: object, needle: str) -> None:
    err = load_error(tmp_path, broker(), trigger(subscriber={"uri": uri}))
    assert err.field == "spec.subscriber.uri"
    assert needle in err.message


def test_an_absolute_uri_is_used_as_is(tmp_path: Path) -> None:
    uri = "https://hooks.example.com/a/b?c=d"
    assert (
        only_trigger(load(tmp_path, broker(), trigger(subscriber={"uri": uri}))).subscriber == uri
    )


def test_dead_letter_sinks_resolve_like_subscribers(tmp_path: Path) -> None:
    dls = {"ref": {**PAYMENT_REF, "name": "dead-letter"}, "uri": "/failed"}
    topology = load(
        tmp_path,
        broker(delivery={"retry": 1, "deadLetterSink": dls}),
        trigger("inherits"),
        trigger("own", delivery={"retry": 2, "deadLetterSink": dls}),
        service("dead-letter", status={"address": {"url": "http://127.0.0.1:8200"}}),
    )
    assert topology.brokers[("default", "default")].delivery == DeliverySpec(
        retry=1,
        dead_letter_sink="http://127.0.0.1:8200/failed",
        dead_letter_audience="serving.knative.dev/service/default/dead-letter",
    )
    assert [(t.delivery.retry, t.delivery.dead_letter_sink) for t in topology.triggers] == [
        (1, "http://127.0.0.1:8200/failed"),
        (2, "http://127.0.0.1:8200/failed"),
    ]


def test_an_unresolvable_dead_letter_sink_names_its_field(tmp_path: Path) -> None:
    dls = {"ref": {**PAYMENT_REF, "name": "dead-letter"}}
    err = load_error(tmp_path, broker(), trigger(delivery={"deadLetterSink": dls}))
    assert (err.obj, err.field) == ("Trigger default/orders", "spec.delivery.deadLetterSink.ref")


@pytest.mark.parametrize(
    ("svc", "field"),
    [
        (
            service(annotations={"cascade.dev/url": "localhost:8080"}),
            "metadata.annotations[cascade.dev/url]",
        ),
        (service(status={"url": "payment"}), "status.url"),
        (service(status={"address": {"url": 1}}), "status.address.url"),
        (service(status={"address": "x"}), "status.address"),
        (service(status=["x"]), "status"),
    ],
)
def test_a_service_with_a_bad_url_is_rejected(
    tmp_path: Path, svc: dict[str, Any], field: str
) -> None:
    err = load_error(tmp_path, svc)
    assert (err.obj, err.field) == ("Service default/payment", field)


def test_ca_certs_are_ignored_with_a_notice_and_audiences_are_kept(tmp_path: Path) -> None:
    subscriber = {"uri": "https://x.example/", "CACerts": "---PEM---", "audience": "x"}
    dls = {"uri": "https://dls.example/", "audience": "dls"}
    path = write(
        tmp_path, broker(), trigger(subscriber=subscriber, delivery={"deadLetterSink": dls})
    )
    topology = load_topology([path])
    loaded = only_trigger(topology)
    assert loaded.subscriber == "https://x.example/"
    assert loaded.subscriber_audience == "x"
    assert loaded.delivery.dead_letter_audience == "dls"
    prefix = f"{path}: Trigger default/orders: spec."
    assert topology.notices == (f"{prefix}subscriber.CACerts is ignored by the local broker",)

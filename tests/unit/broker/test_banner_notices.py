"""Startup notices: a chart render's many cluster-only objects fold into one line per file."""

from __future__ import annotations

from cascade.broker.banner import summarize_notices


def test_ignored_kinds_fold_into_one_line_per_file_with_counts() -> None:
    notices = [
        "ignored kind EventType 'a' in k8s/rendered/shop.yaml",
        "ignored kind EventType 'b' in k8s/rendered/shop.yaml",
        "ignored kind Kafka 'cascade' in k8s/rendered/shop.yaml",
        "ignored kind ConfigMap 'x' in other.yaml",
    ]
    assert summarize_notices(notices) == [
        "k8s/rendered/shop.yaml: ignored 3 object(s) of kinds used only on a cluster: "
        "EventType x2, Kafka",
        "other.yaml: ignored 1 object(s) of kinds used only on a cluster: ConfigMap",
    ]


def test_other_notices_pass_through_unchanged_and_first() -> None:
    odd = "ignored kind Trigger 'old' (apiVersion eventing.knative.dev/v1beta1) in f.yaml"
    notices = ["ignored kind Pod 'p' in f.yaml", "delivery.format is ignored", odd]
    assert summarize_notices(notices) == [
        "delivery.format is ignored",
        odd,
        "f.yaml: ignored 1 object(s) of kinds used only on a cluster: Pod",
    ]


def test_no_notices_no_lines() -> None:
    assert summarize_notices([]) == []

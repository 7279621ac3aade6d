"""k8s/rendered/shop.yaml is the chart's default render, committed: it must be fresh, and the
local broker must build from it exactly the routing its Triggers describe. `cascade run` reads
this file, so the laptop and a cluster can never drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scripts import render_chart

from cascade.broker.topology import Topology, load_topology
from functions.shop.events import SHOP_EVENTS
from tests.chart.support import ROOT, documents, named, of_kind, seconds
from tests.shop import FUNCTIONS

RENDERED = ROOT / "k8s" / "rendered" / "shop.yaml"
URLS = {("default", name): f"http://127.0.0.1:{9300 + i}" for i, name in enumerate(FUNCTIONS)}


@pytest.fixture(scope="module")
def rendered(tools: Path) -> Topology:
    return load_topology([RENDERED], service_urls=URLS)


@pytest.fixture(scope="module")
def rendered_docs() -> list[dict[str, Any]]:
    return documents(RENDERED.read_text(encoding="utf-8"))


def test_the_committed_render_is_fresh(tools: Path) -> None:
    assert RENDERED.read_text(encoding="utf-8") == render_chart.golden_text(), (
        "k8s/rendered/shop.yaml is stale: run `make render` and commit it"
    )


def test_the_check_names_the_fix(
    tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "k8s" / "rendered" / "shop.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("# edited by hand\n", encoding="utf-8")
    monkeypatch.setattr(render_chart, "GOLDEN", stale)
    monkeypatch.setattr(render_chart, "ROOT", tmp_path)
    assert render_chart.main(["--check"]) == 1
    message = capsys.readouterr().err
    assert "k8s/rendered/shop.yaml is stale" in message
    assert "run `make render`" in message
    assert render_chart.main([]) == 0
    assert render_chart.main(["--check"]) == 0


def test_every_rendered_service_resolves_through_service_urls(
    rendered: Topology, rendered_docs: list[dict[str, Any]]
) -> None:
    services = named(of_kind(rendered_docs, "Service", "serving.knative.dev"))
    assert sorted(services) == sorted(FUNCTIONS)
    assert {key: s.url for key, s in rendered.services.items()} == URLS


def test_the_local_broker_builds_exactly_the_rendered_triggers(
    rendered: Topology, rendered_docs: list[dict[str, Any]]
) -> None:
    objects = named(of_kind(rendered_docs, "Trigger"))
    built = {t.name: t for t in rendered.triggers}
    assert sorted(built) == sorted(objects)
    for name, obj in objects.items():
        trigger, spec = built[name], obj["spec"]
        assert trigger.broker == spec["broker"] == "shop"
        subscriber = spec["subscriber"]["ref"]["name"]
        assert trigger.subscriber == URLS[("default", subscriber)], name
        assert trigger.subscriber_service is not None
        assert trigger.subscriber_service.name == subscriber
        assert trigger.filter_spec == {"filter": spec["filter"]}, name
        order = obj["metadata"]["annotations"]["kafka.eventing.knative.dev/delivery.order"]
        assert trigger.ordered is (order == "ordered"), name
        delivery = spec["delivery"]
        assert trigger.delivery.retry == delivery["retry"], name
        assert trigger.delivery.backoff_policy == delivery["backoffPolicy"], name
        assert trigger.delivery.backoff_delay == seconds(delivery["backoffDelay"]), name
        assert trigger.delivery.timeout == seconds(delivery["timeout"]), name
        sink = delivery["deadLetterSink"]
        assert trigger.delivery.dead_letter_sink == (
            URLS[("default", sink["ref"]["name"])] + sink["uri"]
        ), name
    broker = rendered.brokers[("default", "shop")]
    [broker_obj] = of_kind(rendered_docs, "Broker")
    assert broker.delivery is not None
    assert broker.delivery.retry == broker_obj["spec"]["delivery"]["retry"]
    assert broker.delivery.dead_letter_sink == URLS[("default", "dead-letter")] + "/dead-letters"


# Variables the chart sets for the pod it runs in and its size; `cascade run` sets its own for
# this machine (the runner takes a Service's other plain env values from the manifests).
WHERE_IT_RUNS = {
    "PORT", "K_SINK", "CASCADE_HOST", "CASCADE_DATA_DIR", "DATABASE_URL", "CASCADE_WORKERS"
}  # fmt: skip
SAME_AS_LOCAL_DEFAULTS = {
    "CASCADE_THREADS": "1",
    "CASCADE_LOG_LEVEL": "INFO",
}


def _plain_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        s["metadata"]["name"]: {
            e["name"]: e["value"]
            for e in s["spec"]["template"]["spec"]["containers"][0].get("env", [])
            if "value" in e
        }
        for s in of_kind(docs, "Service", "serving.knative.dev")
    }


def test_no_path_of_the_pod_reaches_this_machine(rendered_docs: list[dict[str, Any]]) -> None:
    """`cascade run` passes each Service's plain env values to the local function, minus the
    variables that say where the pod runs; none of the rest may point into the pod (/data)."""
    envs = _plain_env(rendered_docs)
    assert sorted(envs) == sorted(FUNCTIONS)
    for name, env in envs.items():
        local = {
            k: v for k, v in env.items() if k not in WHERE_IT_RUNS and not k.startswith("OTEL_")
        }
        for key, default in SAME_AS_LOCAL_DEFAULTS.items():
            assert local.get(key) == default, (name, key)
        assert not [v for v in local.values() if v.startswith("/")], name


def test_every_shop_event_has_a_rendered_trigger(rendered: Topology) -> None:
    for model in SHOP_EVENTS:
        event = {"specversion": "1.0", "id": "x", "source": "/x", "type": model.ce_type}
        assert [t.name for t in rendered.triggers if t.filter.matches(event)], model.ce_type

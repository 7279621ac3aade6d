"""The chart's EventTypes come from the shop's contracts (scripts/event_types.py); values.yaml
must hold exactly what the generator prints now, and the render must cover every routed type."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from scripts import event_types

from functions.shop.events import SHOP_EVENTS
from tests.chart.support import ROOT, named, of_kind


def test_values_yaml_holds_the_generated_event_types() -> None:
    text = event_types.VALUES.read_text(encoding="utf-8")
    assert event_types.block(event_types.event_types()) in text, (
        "charts/cascade/values.yaml: eventTypes drifted from functions/shop; "
        "run `python scripts/event_types.py --write`"
    )


def test_the_check_mode_passes_now_and_names_the_fix_on_drift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = subprocess.run(
        [sys.executable, "scripts/event_types.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = event_types.VALUES.read_text(encoding="utf-8")
    entries = yaml.safe_load(text)["eventTypes"]
    stale = tmp_path / "charts" / "cascade" / "values.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text(event_types.replace_block(text, event_types.block(entries[:-1])))
    monkeypatch.setattr(event_types, "VALUES", stale)
    monkeypatch.setattr(event_types, "ROOT", tmp_path)
    assert event_types.main(["--check"]) == 1
    assert "run `python scripts/event_types.py --write`" in capsys.readouterr().err
    assert event_types.main(["--write"]) == 0
    assert event_types.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == text


def test_one_entry_per_shop_event_with_its_producer() -> None:
    entries = event_types.event_types()
    assert [e["type"] for e in entries] == [model.ce_type for model in SHOP_EVENTS]
    sources = {e["type"]: e["source"] for e in entries}
    assert sources["com.example.shop.order.created"] == "/order"
    assert sources["com.example.shop.inventory.reserved"] == "/inventory"
    assert sources["com.example.shop.payment.declined"] == "/payment"


def test_replace_block_refuses_a_file_without_markers() -> None:
    with pytest.raises(SystemExit, match="markers"):
        event_types.replace_block("eventTypes: []\n", "x\n")


def test_the_render_has_an_event_type_for_every_routed_type(
    default_docs: list[dict[str, Any]],
) -> None:
    rendered = named(of_kind(default_docs, "EventType", "eventing.knative.dev"))
    routed = {t["spec"]["filter"]["attributes"]["type"] for t in of_kind(default_docs, "Trigger")}
    assert set(rendered) == routed == {model.ce_type for model in SHOP_EVENTS}
    sources = {e["type"]: e["source"] for e in event_types.event_types()}
    for name, obj in rendered.items():
        # v1beta2 is what Knative 1.20 stores; only its fields are rendered
        assert obj["apiVersion"] == "eventing.knative.dev/v1beta2"
        assert set(obj["spec"]) == {"type", "source", "reference", "description"}
        assert obj["spec"]["type"] == name
        assert obj["spec"]["source"] == sources[name]
        assert obj["spec"]["reference"]["name"] == "shop"
        # the attributes survive in the description
        assert obj["spec"]["description"].endswith(
            "Attributes: specversion=1.0, id, time, datacontenttype=application/json, "
            "subject={order_id}, partitionkey={order_id}, traceparent (optional)."
        ), obj["spec"]["description"]

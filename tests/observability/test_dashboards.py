"""The dashboards and rules as files and as the chart ships them (fast; no Prometheus here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cascade"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
RULES = CHART / "rules" / "cascade.rules.yaml"
RENDERED = ROOT / "k8s" / "rendered" / "shop.yaml"


def rendered(kind: str, name: str) -> dict[str, Any]:
    for document in yaml.safe_load_all(RENDERED.read_text()):
        if document and document["kind"] == kind and document["metadata"]["name"] == name:
            found: dict[str, Any] = document
            return found
    raise AssertionError(f"no {kind} {name} in {RENDERED}")


def test_the_chart_ships_every_dashboard_unchanged_to_grafanas_sidecar() -> None:
    config_map = rendered("ConfigMap", "cascade-dashboards")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert sorted(config_map["data"]) == [path.name for path in DASHBOARDS]
    for path in DASHBOARDS:
        assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())


def test_the_chart_ships_the_rules_file_as_a_prometheusrule() -> None:
    rule = rendered("PrometheusRule", "cascade")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    # Alert templates reach Prometheus as written, not eaten by Helm's own templating.
    descriptions = [
        r["annotations"]["description"]
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if "alert" in r
    ]
    assert any("{{ $value" in text for text in descriptions)


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found += _panels(panel.get("panels") or [])
    return found


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_a_dashboard_is_well_formed_for_grafana(path: Path) -> None:
    document = json.loads(path.read_text())
    assert document["uid"] == path.stem
    panels = _panels(document["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["description"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [target["refId"] for target in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_the_dashboards_are_different_dashboards() -> None:
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS]
    assert len(DASHBOARDS) >= 2
    assert len(uids) == len(set(uids))

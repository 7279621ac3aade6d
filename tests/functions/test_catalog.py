"""docs/events.md is generated from the contracts; it must match what the generator prints now."""

from __future__ import annotations

import subprocess
import sys

from functions.shop.catalog import render
from functions.shop.events import SHOP_EVENTS
from tests.shop import ROOT

CATALOG = ROOT / "docs" / "events.md"


def test_docs_events_md_is_up_to_date() -> None:
    assert CATALOG.read_text(encoding="utf-8") == render(), (
        "docs/events.md is stale: run `python -m functions.shop.catalog > docs/events.md`"
    )


def test_the_catalog_documents_every_type_with_its_schema() -> None:
    text = render()
    for model in SHOP_EVENTS:
        assert f"## {model.ce_type}" in text
        assert f'"x-cloudevents-type": "{model.ce_type}"' in text


def test_the_module_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "functions.shop.catalog"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == CATALOG.read_text(encoding="utf-8")

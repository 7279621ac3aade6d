"""`cascade catalog`: the shop's catalog from the command line, and clear errors for folders that
are missing, empty, broken or hostile."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cascade.catalog import build_catalog, render_markdown, schema_file_name
from cascade.cli import main

ROOT = Path(__file__).resolve().parents[3]
SHOP_MANIFEST = ROOT / "k8s" / "rendered" / "shop.yaml"


def catalog(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["catalog", *args])
    return result.exit_code, result.output


def function(folder: Path, name: str, body: str) -> Path:
    (folder / name).mkdir(parents=True)
    (folder / name / "func.py").write_text(body, encoding="utf-8")
    return folder


def handler_of(event_type: str, name: str = "probe") -> str:
    """A func.py with one handler for ``event_type`` (types are process-wide: keep them unique)."""
    return f'''
from cascade import Event, Function

class Probe(Event, type={event_type!r}):
    """A probe event."""
    value: int

fn = Function({name!r})

@fn.on(Probe)
def handle(event: Probe) -> None:
    return None
'''


def test_the_shop_catalog_as_event_types_schemas_and_markdown() -> None:
    code, output = catalog(str(ROOT / "functions"), "--broker", "shop/main")
    assert code == 0, output
    objects = list(yaml.safe_load_all(output))
    shop = build_catalog(ROOT / "functions")
    assert [o["metadata"]["name"] for o in objects] == [e.type for e in shop.entries]
    created = next(o for o in objects if o["metadata"]["name"].endswith("order.created"))
    assert created["apiVersion"] == "eventing.knative.dev/v1beta2"
    assert created["metadata"]["namespace"] == "shop"
    assert created["spec"]["reference"]["name"] == "main"
    assert (created["spec"]["type"], created["spec"]["source"]) == (
        "com.example.shop.order.created",
        "/order",
    )
    assert created["spec"]["description"].endswith("Produced by order.")
    # The same objects as the chart renders (k8s/rendered/shop.yaml), type and source alike.
    rendered = {
        o["metadata"]["name"]: (o["apiVersion"], o["spec"]["type"], o["spec"]["source"])
        for o in yaml.safe_load_all(SHOP_MANIFEST.read_text(encoding="utf-8"))
        if o and o.get("kind") == "EventType"
    }
    generated = {
        o["metadata"]["name"]: (o["apiVersion"], o["spec"]["type"], o["spec"]["source"])
        for o in objects
    }
    assert generated == rendered

    code, output = catalog(str(ROOT / "functions"), "--event-type-api", "v1beta3")
    assert code == 0, output
    created = next(
        o
        for o in yaml.safe_load_all(output)
        if o["spec"]["attributes"][2]["value"] == "com.example.shop.order.created"
    )
    attributes = {a["name"]: a.get("value") for a in created["spec"]["attributes"]}
    assert attributes["source"] == "/order"
    assert attributes["specversion"] == "1.0"

    code, output = catalog(str(ROOT / "functions"), "--format", "schemas")
    assert code == 0, output
    schemas = json.loads(output)
    assert schemas == shop.json_schemas()
    assert schemas["com.example.shop.order.created"]["x-cloudevents-type"] == (
        "com.example.shop.order.created"
    )

    args = (str(ROOT / "functions"), "-f", str(SHOP_MANIFEST), "--format", "markdown")
    code, output = catalog(*args)
    assert code == 0, output
    with_triggers = build_catalog(ROOT / "functions", manifests=[SHOP_MANIFEST])
    assert output == render_markdown(with_triggers.entries)
    assert "inventory (Trigger `inventory-order-created`, ordered)" in output


def test_output_writes_every_format(tmp_path: Path) -> None:
    out = tmp_path / "catalog"
    code, output = catalog(str(ROOT / "functions"), "-o", str(out))
    assert code == 0, output
    shop = build_catalog(ROOT / "functions")
    files = sorted(p.name for p in (out / "schemas").iterdir())
    assert files == sorted(schema_file_name(e.type) for e in shop.entries)
    written = json.loads(
        (out / "schemas" / "com.example.shop.order.created.schema.json").read_text()
    )
    assert written == shop.entry("com.example.shop.order.created").json_schema()
    assert len(list(yaml.safe_load_all((out / "eventtypes.yaml").read_text()))) == len(files)
    assert (out / "events.md").read_text().startswith("# Event catalog")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing", "no such folder"),
        (lambda d: (d / "file.txt").write_text("x") and d / "file.txt", "not a folder"),
        (lambda d: d, "no <name>/func.py inside"),
        (lambda d: function(d, "Bad_Name", "x = 1\n"), "'Bad_Name' cannot be a function name"),
        (
            lambda d: function(d, "boom", "raise RuntimeError('broken\\nat import')\n"),
            "func.py: importing it failed: RuntimeError: broken at import",
        ),
        (
            lambda d: function(d, "exits", "raise SystemExit(3)\n"),
            "importing it failed: SystemExit",
        ),
        (lambda d: function(d, "bare", "x = 1\n"), "defines no cascade.Function"),
        (lambda d: function(d, "syntax", "def (:\n"), "importing it failed: SyntaxError"),
    ],
)
def test_a_bad_folder_is_a_clear_error(tmp_path: Path, setup: object, message: str) -> None:
    folder = setup(tmp_path)  # type: ignore[operator]
    code, output = catalog(str(folder))
    assert code == 1, output
    assert message in output
    assert "Traceback" not in output


def test_control_characters_in_names_are_escaped(tmp_path: Path) -> None:
    function(tmp_path, "evil\x1b]0;pwned\x07", "x = 1\n")
    code, output = catalog(str(tmp_path))
    assert code == 1
    assert "\x1b" not in output
    assert "\x07" not in output
    assert "evil\\x1b]0;pwned\\x07" in output
    message = "raise ValueError('\\x1b[2J cleared')\n"
    function(tmp_path / "b", "fine", message)
    code, output = catalog(str(tmp_path / "b"))
    assert code == 1
    assert "\x1b" not in output
    assert "\\x1b[2J cleared" in output


def test_a_type_never_escapes_the_schemas_folder(tmp_path: Path) -> None:
    hostile = f"../../{uuid.uuid4().hex}/x"
    function(tmp_path / "fns", "probe", handler_of(hostile))
    out = tmp_path / "out"
    code, output = catalog(str(tmp_path / "fns"), "-o", str(out))
    assert code == 0, output
    [written] = (out / "schemas").iterdir()
    assert written.name == schema_file_name(hostile)
    assert written.name.startswith("_")
    assert "/" not in written.name
    assert not any(p.name.endswith(".schema.json") for p in tmp_path.iterdir())
    [event_type] = yaml.safe_load_all((out / "eventtypes.yaml").read_text())
    assert event_type["metadata"]["name"] == event_type["metadata"]["name"].strip(".-")


def test_types_sharing_a_schema_file_are_refused(tmp_path: Path) -> None:
    stem = f"com.example.{uuid.uuid4().hex}"
    function(tmp_path / "fns", "one", handler_of(f"{stem}/x", "one"))
    function(tmp_path / "fns", "two", handler_of(f"{stem}_x", "two"))
    code, output = catalog(str(tmp_path / "fns"), "-o", str(tmp_path / "out"))
    assert code == 1
    assert "would share" in output


def test_bad_manifests_and_options_are_clear_errors(tmp_path: Path) -> None:
    functions = str(ROOT / "functions")
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Trigger\napiVersion: eventing.knative.dev/v1\nmetadata: [\n")
    code, output = catalog(functions, "-f", str(broken))
    assert code == 1
    assert "broken.yaml" in output
    code, output = catalog(functions, "--broker", "nonamespace")
    assert code == 2
    assert "NAMESPACE/NAME" in output
    code, output = catalog(functions, "--format", "pdf")
    assert code == 2


def test_a_folder_whose_functions_carry_no_types_says_so(tmp_path: Path) -> None:
    body = "from cascade import Function\nfn = Function('routes')\n"
    body += "@fn.route('/x')\ndef x(ctx): return {}\n"
    function(tmp_path, "routes", body)
    code, output = catalog(str(tmp_path))
    assert code == 1
    assert "no event types" in output


def test_help_documents_the_options() -> None:
    code, output = catalog("--help")
    assert code == 0
    for option in ("--manifests", "--format", "--output", "--broker", "--event-type-api"):
        assert option in output

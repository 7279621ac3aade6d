"""The public API: what ``cascade`` exports resolves, and functions/ and examples/ cannot
import anything else (ruff's banned-api in functions/ruff.toml must name every private module,
so a module added later is private until someone decides otherwise)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import cascade

ROOT = Path(__file__).resolve().parents[3]
PUBLIC = {"cascade", "cascade.catalog", "cascade.http", "cascade.testing"}


def private_modules() -> set[str]:
    package = ROOT / "src" / "cascade"
    found = set()
    for path in package.iterdir():
        if path.name.startswith("__") or path.name == "py.typed":
            continue
        if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()):
            found.add(f"cascade.{path.stem}")
    return found - PUBLIC


def test_every_private_module_is_banned_in_functions_and_examples() -> None:
    config = tomllib.loads((ROOT / "functions" / "ruff.toml").read_text())
    banned = set(config["lint"]["flake8-tidy-imports"]["banned-api"])
    missing = sorted(private_modules() - banned)
    assert not missing, f"add {missing} to functions/ruff.toml's banned-api"
    assert not banned & PUBLIC
    examples = tomllib.loads((ROOT / "examples" / "ruff.toml").read_text())
    assert examples["extend"] == "../functions/ruff.toml"


def test_the_rule_refuses_a_private_import(tmp_path: Path) -> None:
    probe = ROOT / "examples" / "greeter" / "_public_api_probe.py"
    probe.write_text("from cascade.dispatch import Dispatcher\n\nprint(Dispatcher)\n")
    try:
        ruff = Path(sys.executable).with_name("ruff")
        result = subprocess.run(
            [str(ruff), "check", "--no-cache", str(probe)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        probe.unlink()
    assert result.returncode == 1
    assert "TID251 `cascade.dispatch` is banned" in result.stdout


def test_every_exported_name_resolves() -> None:
    for name in cascade.__all__:
        assert getattr(cascade, name) is not None, name

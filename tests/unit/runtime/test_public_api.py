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


def test_docs_runtime_describes_every_public_name() -> None:
    import re

    import cascade.http
    import cascade.testing

    doc = (ROOT / "docs" / "runtime.md").read_text()
    # Outside the index table, so each name is described where it is used, not only listed.
    body = doc[: doc.index("## The public API")] + doc[doc.index("## Function API") :]
    prose = "\n".join(line for line in body.splitlines() if not line.startswith("```"))
    spans = re.findall(r"`[^`]+`", prose)  # inline code may wrap lines
    missing = [
        f"{module.__name__}.{name}"
        for module in (cascade, cascade.http, cascade.testing)
        for name in module.__all__
        if not any(re.search(rf"(?<![\w.]){re.escape(name)}\b", span) for span in spans)
    ]
    assert not missing, f"docs/runtime.md does not describe {missing}"


def test_readme_starts_with_a_small_function_and_its_test_that_pass(tmp_path: Path) -> None:
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Write a function") :]
    func, test = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[:2]
    assert func.startswith("# hello/func.py")
    assert test.startswith("# hello/test_func.py")
    code_lines = [line for line in func.splitlines() if line.strip() and not line.startswith("#")]
    assert len(code_lines) <= 12  # "about ten lines"
    folder = tmp_path / "hello"
    folder.mkdir()
    (folder / "func.py").write_text(func)
    (folder / "test_func.py").write_text(test)
    ruff = Path(sys.executable).with_name("ruff")
    lint = subprocess.run(
        [str(ruff), "check", "--no-cache", "--config", str(ROOT / "functions" / "ruff.toml")]
        + ["--select", "TID251", "."],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout  # public imports only
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout

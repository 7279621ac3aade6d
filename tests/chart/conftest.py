"""Fixtures of the chart tests: the tools (installed by scripts/tools.sh, with its progress shown)
and the render of every ci/*-values.yaml case, done once per session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.chart.support import CI_VALUES, HELM, ROOT, TOOLS, documents, render


@pytest.fixture(scope="session")
def tools(request: pytest.FixtureRequest) -> Path:
    """helm, kubectl and the CRD models under .tools/, installed when missing.

    A tool that cannot be installed skips the chart tests on a laptop, and FAILS them under
    CI=true: CI must never pass without having run them.
    """
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n==> scripts/tools.sh (helm, kubectl, CRD models into .tools/)", flush=True)
        try:
            result = subprocess.run(
                [str(ROOT / "scripts" / "tools.sh"), "all"], timeout=280, check=False
            )
            problem = None if result.returncode == 0 else f"exit status {result.returncode}"
        except (OSError, subprocess.TimeoutExpired) as error:
            problem = str(error)
    if problem is not None:
        message = f"scripts/tools.sh could not install the chart tools ({problem})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    assert HELM.exists()
    assert (TOOLS / "node" / "node_modules").is_dir()
    return TOOLS


@pytest.fixture(scope="session")
def renders(tools: Path) -> dict[str, str]:
    """ci case name (``default``, ``external-kafka``, ...) -> rendered manifests."""
    return {path.name.removesuffix("-values.yaml"): render([path]) for path in CI_VALUES}


@pytest.fixture(scope="session")
def default_render(tools: Path) -> str:
    return render()


@pytest.fixture(scope="session")
def default_docs(default_render: str) -> list[dict[str, Any]]:
    return documents(default_render)

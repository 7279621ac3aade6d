from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cascade.loader import load_module
from cascade.settings import Settings
from cascade.testing import FunctionClient

PROBE = Path(__file__).with_name("probe_function.py")


@pytest.fixture(scope="session")
def probe() -> ModuleType:
    return load_module(PROBE)


@pytest.fixture
def client(probe: ModuleType, tmp_path: Path) -> Iterator[FunctionClient]:
    probe.calls.clear()
    with FunctionClient(probe.fn, Settings(data_dir=tmp_path)) as c:
        yield c

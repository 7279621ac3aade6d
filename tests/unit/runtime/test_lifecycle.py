"""Lifecycle hooks: start per app (per gunicorn worker after fork), stop once at close or after
the drain, readiness and liveness checks feeding /health/*."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade import Function, LifecycleContext, Settings
from cascade.testing import FunctionClient
from tests.unit.runtime import lifecycle_function


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "lifecycle.log"
    monkeypatch.setenv("LIFECYCLE_LOG", str(path))
    lifecycle_function.READY["value"] = True
    return path


def lines(log: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()] if log.exists() else []


def test_start_hooks_run_in_order_when_the_app_is_built_and_stop_once_at_close(
    log: Path, tmp_path: Path
) -> None:
    client = FunctionClient(lifecycle_function.fn, Settings(data_dir=tmp_path))
    assert lines(log) == ["start lifecycle", "start second"]
    assert client.get("/health/readiness").status == 200
    client.close()
    client.runtime.close()  # a second close runs nothing again
    assert lines(log) == ["start lifecycle", "start second", "stop"]


def test_readiness_hook_answers_503_with_its_detail(log: Path, tmp_path: Path) -> None:
    with FunctionClient(lifecycle_function.fn, Settings(data_dir=tmp_path)) as client:
        lifecycle_function.READY["value"] = False
        result = client.get("/health/readiness")
        assert result.status == 503
        assert result.body == b'{"status":"not ready","detail":"the cache is cold"}'
        assert client.get("/health/liveness").status == 200  # not ready is not dead
        lifecycle_function.READY["value"] = True
        assert client.get("/health/readiness").status == 200


def test_a_raising_check_is_a_503_naming_it(tmp_path: Path) -> None:
    fn = Function("checks")

    @fn.liveness
    def broken(ctx: LifecycleContext) -> bool:
        raise RuntimeError("no")

    with FunctionClient(fn, Settings(data_dir=tmp_path)) as client:
        result = client.get("/health/liveness")
        assert result.status == 503
        assert b"broken raised RuntimeError" in result.body


def test_a_failing_start_hook_stops_the_start_and_still_runs_stop_hooks(tmp_path: Path) -> None:
    fn = Function("failing")
    seen: list[str] = []

    @fn.on_start
    def boom() -> None:
        raise RuntimeError("cannot reach the price list")

    @fn.on_stop
    def stop() -> None:
        seen.append("stop")

    with pytest.raises(RuntimeError, match="price list"):
        FunctionClient(fn, Settings(data_dir=tmp_path))
    assert seen == ["stop"]


def test_hooks_take_the_context_or_nothing(tmp_path: Path) -> None:
    fn = Function("shapes")
    with pytest.raises(TypeError, match="must accept"):
        fn.on_start(lambda a, b: None)
    with pytest.raises(TypeError, match="needs a callable"):
        fn.on_stop(42)  # type: ignore[type-var]
    stored: list[str] = []

    @fn.on_start
    def with_store(ctx: LifecycleContext) -> None:
        with ctx.transaction() as session:
            stored.append(str(session.get_bind().dialect.name))
        assert ctx.settings.data_dir == tmp_path

    with FunctionClient(fn, Settings(data_dir=tmp_path)):
        assert stored == ["sqlite"]

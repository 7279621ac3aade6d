"""Where ``cascade run`` forwards spans: --otlp-endpoint, else the standard variables."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from cascade.runner.command import _forward_url
from cascade.traces.store import STORE_FILE
from tests.e2e.harness import run_cli


@pytest.mark.parametrize(
    ("option", "environ", "forward"),
    [
        (None, {}, None),
        ("http://127.0.0.1:4318", {}, "http://127.0.0.1:4318/v1/traces"),
        ("http://jaeger:4318/", {}, "http://jaeger:4318/v1/traces"),
        ("https://c.example/v1/traces", {}, "https://c.example/v1/traces"),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
        # The traces variable is a full URL and wins, as in the SDK.
        (
            None,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/custom/path",
            },
            "http://t:4318/custom/path",
        ),
        # The option wins over the environment.
        (
            "http://o:4318",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            "http://o:4318/v1/traces",
        ),
    ],
)
def test_the_forward_target(
    monkeypatch: pytest.MonkeyPatch,
    option: str | None,
    environ: dict[str, str],
    forward: str | None,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert _forward_url(option) == forward


def test_a_bad_forward_target_is_refused_naming_where_it_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    with pytest.raises(click.BadParameter, match="http:// or https://"):
        _forward_url("collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    with pytest.raises(click.UsageError, match="OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318'"):
        _forward_url(None)


def test_a_broken_span_store_stops_the_run_before_anything_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / STORE_FILE).write_bytes(b"this is not a SQLite database" * 100)
    result = run_cli("run", "--data-dir", str(data_dir), "--port", "0", "--base-port", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cannot open the span store {data_dir / STORE_FILE}" in result.stdout
    assert not (data_dir / "logs").exists()  # no process was started

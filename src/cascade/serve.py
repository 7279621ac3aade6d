"""``cascade serve PATH``: run one function under gunicorn with the Cascade preset."""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from pathlib import Path
from typing import Any

import click

from cascade.function import Function
from cascade.loader import FunctionNotFound, load_function
from cascade.settings import Settings, SettingsError
from cascade.store import Store, StoreError
from cascade.telemetry.logging import setup_logging
from cascade.telemetry.metrics import enable_multiprocess, multiprocess_dir

__all__ = ["prepare", "serve"]


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--host", help="Interface to listen on (env CASCADE_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (env PORT, default 8080).")
@click.option("--workers", type=int, help="Worker processes (env CASCADE_WORKERS, default 2).")
@click.option("--threads", type=int, help="Threads per worker (env CASCADE_THREADS, default 4).")
@click.option(
    "--graceful-timeout",
    type=float,
    help="Seconds in-flight requests get after SIGTERM (env CASCADE_GRACEFUL_TIMEOUT, 30).",
)
@click.option("--log-level", help="DEBUG, INFO, WARNING, ERROR (env CASCADE_LOG_LEVEL, INFO).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="SQLite folder (.cascade).")
@click.option("--function", "function_name", help="Which Function, when PATH defines several.")
def serve(
    path: Path,
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    graceful_timeout: float | None,
    log_level: str | None,
    data_dir: Path | None,
    function_name: str | None,
) -> None:
    """Serve the function at PATH (a folder with func.py, or a .py file) under gunicorn.

    Endpoints: POST / (CloudEvents), GET /health/liveness, GET /health/readiness,
    GET /metrics. SIGTERM drains in-flight requests and exits 0.
    """
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "host": host,
            "port": port,
            "workers": workers,
            "threads": threads,
            "graceful_timeout_seconds": graceful_timeout,
            "log_level": log_level.upper() if log_level else None,
            "data_dir": data_dir,
        }.items()
        if value is not None
    }
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        raise click.ClickException(f"invalid setting: {exc}") from None
    setup_logging(settings.log_level)
    function = _load(path, function_name)
    metrics_dir, owned = _metrics_dir()
    master = os.getpid()
    try:
        prepare(function, settings)
        enable_multiprocess(metrics_dir)
        # Imported late: gunicorn is only needed by this command.
        from cascade.gunicorn import FunctionApplication

        FunctionApplication(function, settings).run()
    finally:
        # Workers are forked inside run() and unwind through here when they exit: only the
        # master may remove the folder every worker writes to.
        if owned and os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def prepare(function: Function, settings: Settings) -> None:
    """Master-side start checks: the store opens and its tables exist (before any fork)."""
    try:
        store = Store(settings.database_url_for(function.name), function.metadata)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        store.create_all()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.dispose()  # no pooled connection may cross the fork


def _load(path: Path, name: str | None) -> Function:
    try:
        return load_function(path, name)
    except FunctionNotFound as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        # The user's module failed to import: show where, not our loader's frames.
        frames = traceback.extract_tb(exc.__traceback__)
        user = [f for f in frames if not f.filename.startswith(str(Path(__file__).parent))]
        location = f" ({user[-1].filename}:{user[-1].lineno})" if user else ""
        raise click.ClickException(
            f"cannot import {path}: {type(exc).__name__}: {exc}{location}"
        ) from None


def _metrics_dir() -> tuple[Path, bool]:
    configured = multiprocess_dir()
    if configured:
        return Path(configured), False
    return Path(tempfile.mkdtemp(prefix="cascade-metrics-")), True

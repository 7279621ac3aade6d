"""The gunicorn preset that serves a function: fork-safe, no control socket, graceful drain.

- gthread workers (``CASCADE_WORKERS`` processes x ``CASCADE_THREADS`` threads, 2 x 4 by
  default): connections wait in the worker's poller until they send something, and one slow
  client holds at most one thread, so the others keep serving events and health checks.

- The master imports the function, creates its tables and prepares multiprocess metrics, then
  forks; it never starts tracing (the BatchSpanProcessor thread would not survive ``fork``)
  and disposes its database engine before forking.
- Each worker starts tracing in ``post_fork`` and builds the app with :func:`create_app`;
  ``post_worker_init`` then freezes start-up's objects out of the collector's full passes.
- ``SIGTERM`` (Knative, Kubernetes, Ctrl-C via the master) marks the app as draining:
  readiness answers 503, new events get 503, in-flight requests finish within
  ``graceful_timeout``; then the process exits 0.
- gunicorn 27's control socket (``~/.gunicorn/gunicorn.ctl``) is disabled: several
  functions on one machine would otherwise fight over (and delete) the same socket.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from cascade.app import create_app, runtime_of
from cascade.function import Function
from cascade.settings import Settings
from cascade.startup_objects import freeze_startup_objects
from cascade.telemetry.logging import JsonFormatter
from cascade.telemetry.metrics import mark_process_dead
from cascade.telemetry.tracing import setup_tracing

__all__ = ["FunctionApplication", "JsonLogger", "gunicorn_options"]


class JsonLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's own log lines as JSON, like everything else the function logs."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter({"component": "gunicorn"}))


def gunicorn_options(function: Function, settings: Settings) -> dict[str, Any]:
    """The gunicorn settings of the preset (hooks included)."""
    shm = Path("/dev/shm")
    options: dict[str, Any] = {
        "bind": [f"{_host(settings.host)}:{settings.port}"],
        "workers": settings.workers,
        "threads": settings.threads,
        # gthread: a bounded pool of ``threads`` per worker behind a poller. A client that
        # trickles its request holds one thread, not the worker, so health checks and other
        # requests go on (issue 10, item 7); bench/worker_setup.py measures it against one thread.
        "worker_class": "gthread",
        # gunicorn wants whole seconds.
        "graceful_timeout": math.ceil(settings.graceful_timeout_seconds),
        "timeout": math.ceil(settings.timeout_seconds),
        "control_socket_disable": True,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logger_class": JsonLogger,
        "proc_name": f"cascade-{function.name}",
        "preload_app": False,
        "post_fork": _post_fork(function),
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
    }
    if shm.is_dir():
        options["worker_tmp_dir"] = str(shm)  # heartbeat files off the (maybe slow) disk
    return options


class FunctionApplication(BaseApplication):  # type: ignore[misc]
    """Runs one Function under gunicorn with the preset above."""

    def __init__(self, function: Function, settings: Settings) -> None:
        self.function = function
        self.settings = settings
        self.options = gunicorn_options(function, settings)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Runs in each worker, after post_fork: tracing is already set up there.
        return create_app(self.function, self.settings)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _post_fork(function: Function) -> Any:
    def post_fork(_server: Any, _worker: Any) -> None:
        setup_tracing(function.name)

    return post_fork


def _post_worker_init(worker: Any) -> None:
    runtime = runtime_of(worker.wsgi)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        runtime.start_draining()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    freeze_startup_objects()  # the app is built: what exists now lives as long as the worker


def _worker_exit(_server: Any, worker: Any) -> None:
    from opentelemetry import trace

    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):
        runtime_of(app).close()  # stop hooks and the outbox relay, which may still send spans
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if callable(flush):
        flush(5000)  # spans of the last requests must not die with the worker


def _child_exit(_server: Any, worker: Any) -> None:
    mark_process_dead(worker.pid)

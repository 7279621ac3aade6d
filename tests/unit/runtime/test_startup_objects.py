"""Start-up's objects leave the collector's full passes; later garbage is still collected."""

from __future__ import annotations

import gc
import signal
import weakref
from pathlib import Path
from types import SimpleNamespace

from cascade.app import create_app, runtime_of
from cascade.function import Function
from cascade.gunicorn import gunicorn_options
from cascade.settings import Settings
from cascade.startup_objects import freeze_startup_objects


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_freezes_what_exists_and_still_collects_later_cycles() -> None:
    before = _Node()
    try:
        frozen = freeze_startup_objects()
        # Not equal to a later get_freeze_count(): a frozen object freed meanwhile leaves it.
        assert frozen > 0
        assert not any(obj is before for obj in gc.get_objects())  # out of every generation
        later = _Node()
        later.other = later  # a cycle: only the collector can free it
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()


def test_a_gunicorn_worker_freezes_once_its_app_is_built(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    hook = gunicorn_options(Function("frozen"), settings)["post_worker_init"]
    worker = SimpleNamespace(wsgi=create_app(Function("frozen"), settings))
    app_object = weakref.ref(worker.wsgi)
    previous = signal.getsignal(signal.SIGTERM)
    gc.unfreeze()
    try:
        hook(worker)
        assert gc.get_freeze_count() > 0
        assert not any(obj is app_object() for obj in gc.get_objects())
    finally:
        gc.unfreeze()
        signal.signal(signal.SIGTERM, previous)
        runtime_of(worker.wsgi).close()

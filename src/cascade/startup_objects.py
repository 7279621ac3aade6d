"""Keep start-up's objects out of the garbage collector's full passes.

A long-running process (a function worker, the broker) imports tens of thousands of objects
once: modules, classes, functions, the app. CPython's full (generation 2) collection walks
every one of them each time it runs, though none of them ever becomes garbage; ``gc.freeze``
moves them to a permanent generation the collector skips (docs.python.org/3/library/gc.html).
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_objects"]


def freeze_startup_objects() -> int:
    """Collect start-up's garbage, then freeze what is left; returns how many objects that is.

    Call once, when start-up is over: anything created later is collected as usual."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()

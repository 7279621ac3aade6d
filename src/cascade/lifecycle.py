"""A function's lifecycle: start and stop hooks per worker, liveness and readiness checks.

The shape follows Knative's func-python (``start``/``stop``/``alive``/``ready``):

```python
fn = Function("pricing")

@fn.on_start
def load_prices(ctx: LifecycleContext) -> None:      # each worker, after the fork
    with ctx.transaction() as session:
        PRICES.update(read_prices(session))

@fn.readiness
def prices_loaded() -> tuple[bool, str]:              # GET /health/readiness
    return bool(PRICES), f"{len(PRICES)} prices"

@fn.on_stop
def say_bye(ctx: LifecycleContext) -> None:          # after the drain, at worker exit
    ctx.logger.info("stopping")
```
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from cascade.function import Function, Hook
    from cascade.settings import Settings
    from cascade.store import Store

__all__ = ["Lifecycle", "LifecycleContext"]

_log = logging.getLogger("cascade.lifecycle")


class LifecycleContext:
    """What a start/stop hook or a health check gets: the function's name, settings, logger
    and store."""

    __slots__ = ("_store", "function", "logger", "settings")

    def __init__(self, function: str, settings: Settings, store: Store) -> None:
        self.function = function
        self.settings = settings
        self.logger = logging.getLogger(f"cascade.fn.{function}")
        self._store = store

    def session(self) -> Session:
        """A new SQLAlchemy Session on the function's store; the caller owns it."""
        return self._store.session()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A Session in one transaction: committed on success, rolled back on error."""
        with self._store.transaction() as session:
            yield session


class Lifecycle:
    """Runs one function's hooks in one process: start once, stop once."""

    def __init__(self, function: Function, ctx: LifecycleContext) -> None:
        self._function = function
        self.ctx = ctx
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False

    def start(self, also: Callable[[], None] | None = None) -> None:
        """Run the start hooks in order (``also`` first: the runtime's own); raises on the
        first failure."""
        with self._lock:
            if self._started:
                return
            self._started = True
        if also is not None:
            also()
        for hook in self._function.start_hooks:
            hook(self.ctx)

    def stop(self, also: Callable[[], None] | None = None) -> None:
        """Run the stop hooks once, in reverse order (``also`` last); failures are logged."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for hook in reversed(self._function.stop_hooks):
            try:
                hook(self.ctx)
            except Exception:
                _log.exception("on_stop hook %s failed", hook.name)
        if also is not None:
            also()

    def ready(self) -> tuple[bool, str | None]:
        return _check(self._function.readiness_checks, self.ctx)

    def alive(self) -> tuple[bool, str | None]:
        return _check(self._function.liveness_checks, self.ctx)


def _check(checks: Sequence[Hook], ctx: LifecycleContext) -> tuple[bool, str | None]:
    """All checks pass: (True, None); else (False, what the first failing one said)."""
    for hook in checks:
        try:
            result = hook(ctx)
        except Exception as exc:
            _log.warning("health check %s raised %s", hook.name, type(exc).__name__, exc_info=exc)
            return False, f"{hook.name} raised {type(exc).__name__}"
        if isinstance(result, tuple) and len(result) == 2:
            ok, detail = bool(result[0]), str(result[1])
        else:
            ok, detail = bool(result), f"{hook.name} returned {result!r}"
        if not ok:
            return False, detail
    return True, None

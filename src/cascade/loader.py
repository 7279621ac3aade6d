"""Find the ``Function`` of a function folder (``func.py`` inside) or of a ``.py`` file."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from cascade.function import Function

__all__ = ["FunctionNotFound", "find_function", "load_function", "load_module"]


class FunctionNotFound(LookupError):
    """PATH holds no usable function; the message says what was looked for."""


def function_file(path: str | Path) -> Path:
    """``PATH/func.py`` for a folder, PATH itself for a ``.py`` file."""
    target = Path(path)
    if target.is_dir():
        candidate = target / "func.py"
        if not candidate.is_file():
            raise FunctionNotFound(f"{target}/ has no func.py")
        return candidate.resolve()
    if target.is_file():
        if target.suffix != ".py":
            raise FunctionNotFound(f"{target} is not a Python file (.py) or a folder")
        return target.resolve()
    raise FunctionNotFound(f"{target} does not exist")


def load_module(path: str | Path) -> ModuleType:
    """Import the function's file under a name unique to its location (idempotent).

    The file's folder goes on ``sys.path`` so it can import its neighbours, and so does the
    current directory, as ``python -m`` would, so a project's shared packages resolve.
    """
    file = function_file(path)
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:8]
    stem = re.sub(r"\W", "_", file.parent.name if file.name == "func.py" else file.stem)
    name = f"cascade_fn_{stem}_{digest}"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    for entry in (str(file.parent), str(Path.cwd())):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise FunctionNotFound(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic and typing resolve annotations through it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def find_function(module: ModuleType, name: str | None = None) -> Function:
    """The module's one top-level ``Function`` (or the one called ``name``)."""
    found = {attr: value for attr, value in vars(module).items() if isinstance(value, Function)}
    where = getattr(module, "__file__", module.__name__)
    if name is not None:
        matches = [f for f in found.values() if f.name == name]
        if not matches:
            known = ", ".join(sorted(f.name for f in found.values())) or "none"
            raise FunctionNotFound(f"{where}: no Function named {name!r} (found: {known})")
        return matches[0]
    unique = {id(f): f for f in found.values()}
    if not unique:
        raise FunctionNotFound(
            f'{where} defines no cascade.Function; add `fn = Function("my-function")`'
        )
    if len(unique) > 1:
        names = ", ".join(sorted(f.name for f in unique.values()))
        raise FunctionNotFound(f"{where} defines several Functions ({names}); pick one by name")
    function = next(iter(unique.values()))
    if not function.handlers and not function.routes:
        raise FunctionNotFound(f"{where}: Function {function.name!r} has no handlers")
    return function


def load_function(path: str | Path, name: str | None = None) -> Function:
    """Import PATH and return its Function."""
    return find_function(load_module(path), name)

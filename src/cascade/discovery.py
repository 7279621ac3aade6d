"""The functions of a folder, found one way for everyone: ``cascade run``, ``cascade catalog``,
:class:`cascade.testing.Chain` and the tests.

A function is a subfolder ``<name>/func.py`` that defines one :class:`cascade.Function`; the
folder name is the function's name (the Knative Service, the image ``cascade-<name>``), so it
must be a DNS-1123 label. Subfolders without ``func.py`` (shared contracts such as the shop's
``functions/shop``) and names starting with ``.`` or ``_`` are not functions.

```python
from cascade.discovery import discover

for found in discover("functions"):
    print(found.name, found.function.consumes())
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

from cascade.function import Function
from cascade.loader import FunctionNotFound, find_function, load_module
from cascade.terminal import printable

__all__ = ["DiscoveredFunction", "DiscoveryError", "discover", "function_folders"]

_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


class DiscoveryError(ValueError):
    """The folder holds no usable functions; the message names the folder or file and why."""


@dataclass(frozen=True)
class DiscoveredFunction:
    """One function of the folder: its name, folder, imported ``func.py`` and Function."""

    name: str
    folder: Path
    module: ModuleType
    function: Function


def function_folders(functions_dir: str | Path) -> list[Path]:
    """The ``<name>/func.py`` folders of ``functions_dir``, by name, without importing them."""
    root = Path(functions_dir)
    if not root.exists():
        raise DiscoveryError(f"{_shown(root)}: no such folder")
    if not root.is_dir():
        raise DiscoveryError(f"{_shown(root)}: not a folder")
    found = []
    for child in sorted(root.iterdir()):
        if child.name.startswith((".", "_")) or not (child / "func.py").is_file():
            continue
        if not _NAME.match(child.name):
            raise DiscoveryError(
                f"{_shown(child)}: {child.name!r} cannot be a function name (it names the "
                "Knative Service): use lowercase letters, digits and '-', at most 63"
            )
        found.append(child)
    if not found:
        raise DiscoveryError(f"{_shown(root)}: no <name>/func.py inside, so no functions")
    return found


def discover(functions_dir: str | Path) -> list[DiscoveredFunction]:
    """Import every function of ``functions_dir`` (as ``cascade serve`` does), by name.

    Raises :class:`DiscoveryError` naming the file for a missing folder, a bad name, a
    ``func.py`` that fails to import, or one that defines no (or several) Functions.
    """
    discovered = []
    for folder in function_folders(functions_dir):
        file = folder / "func.py"
        try:
            module = load_module(folder)
        except (Exception, SystemExit) as exc:  # the author's code, reported with its file
            raise DiscoveryError(
                f"{_shown(file)}: importing it failed: {type(exc).__name__}: {_oneline(exc)}"
            ) from exc
        try:
            function = find_function(module)
        except FunctionNotFound as exc:
            raise DiscoveryError(printable(str(exc))) from exc
        discovered.append(DiscoveredFunction(folder.name, folder, module, function))
    return discovered


def _shown(path: Path) -> str:
    # Escaped, so a hostile folder name cannot drive the terminal that shows the error.
    return printable(str(path))


def _oneline(exc: BaseException) -> str:
    return printable(" ".join(str(exc).split()))

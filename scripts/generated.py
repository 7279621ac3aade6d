"""What the scripts that write a committed, generated file share: writing it and their usage."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["usage", "write"]


def usage(script: str) -> int:
    """Print the usage of ``scripts/<script> [--check]``; the exit status for bad arguments."""
    print(f"usage: python scripts/{script} [--check]", file=sys.stderr)
    return 2


def write(path: Path, text: str, root: Path) -> int:
    """Write ``text`` to ``path`` (folders created) and say so, relative to ``root``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path.relative_to(root)}")
    return 0

"""The one flag the helper servers take."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def port_from_argv(prog: str, argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    port: int = parser.parse_args(argv).port
    return port

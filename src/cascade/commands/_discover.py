"""Default URLs for the second-terminal commands, read from a running ``cascade run``.

``cascade run`` writes ``<data-dir>/run.json`` with every endpoint; without it (or when the run
that wrote it is gone) the commands fall back to ``cascade run``'s default ports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click

from cascade.runner.state import STATE_FILE, RunState, read_state

__all__ = ["DATA_DIR_OPTION", "broker_url", "ingress_url", "running_state", "service_url"]

DEFAULT_BROKER: Final = "http://127.0.0.1:8080"
DEFAULT_INGRESS: Final = f"{DEFAULT_BROKER}/default/shop"

DATA_DIR_OPTION = click.option(
    "--data-dir",
    default=Path(".cascade"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The data directory of the cascade run to talk to (its run.json gives the URLs).",
)


def running_state(data_dir: Path) -> RunState | None:
    state = read_state(data_dir)
    return state if state is not None and state.alive else None


def ingress_url(data_dir: Path) -> str:
    state = running_state(data_dir)
    return (state.ingress() if state else None) or DEFAULT_INGRESS


def broker_url(data_dir: Path) -> str:
    state = running_state(data_dir)
    return state.broker_url if state else DEFAULT_BROKER


def service_url(data_dir: Path, name: str) -> str:
    """The URL of function ``name`` in the running ``cascade run``; UsageError when unknown."""
    state = read_state(data_dir)
    where = data_dir / STATE_FILE
    if state is None:
        raise click.UsageError(
            f"no --url given and no {where} (is cascade run running with --data-dir {data_dir}?)"
        )
    if not state.alive:
        raise click.UsageError(
            f"no --url given and the cascade run that wrote {where} (pid {state.pid}) has stopped"
        )
    url = state.function_url(name)
    if url is None:
        raise click.UsageError(f"no --url given and {where} lists no function {name!r}")
    return url

"""`cascade serve PATH`: placeholder until the runtime lands."""

from __future__ import annotations

import click


@click.command()
@click.argument("path")
def serve(path: str) -> None:
    """Serve the function at PATH under gunicorn."""
    raise click.ClickException("not implemented yet")

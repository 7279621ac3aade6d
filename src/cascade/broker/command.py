"""`cascade broker`: placeholder until the broker lands."""

from __future__ import annotations

import click


@click.command()
def broker() -> None:
    """Run the local Knative-Kafka-class broker."""
    raise click.ClickException("not implemented yet")

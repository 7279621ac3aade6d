"""The ``cascade`` command."""

from __future__ import annotations

import click

from cascade import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cascade")
def main() -> None:
    """Cascade: CloudEvents functions wired by Knative-style brokers and triggers."""


def _register() -> None:
    # Subcommands live beside the code they drive; importing here keeps `cascade --help` complete.
    from cascade.broker.command import broker
    from cascade.catalog.command import catalog
    from cascade.commands.dlq import dlq
    from cascade.commands.send import send
    from cascade.commands.tail import tail
    from cascade.commands.trace import trace
    from cascade.runner.command import run
    from cascade.serve import serve

    main.add_command(serve)
    main.add_command(broker)
    main.add_command(run)
    main.add_command(send)
    main.add_command(tail)
    main.add_command(dlq)
    main.add_command(trace)
    main.add_command(catalog)


_register()

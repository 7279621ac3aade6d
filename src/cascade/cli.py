"""The ``cascade`` command.

Subcommands are imported when they are run, not when ``cascade`` starts: ``cascade serve``'s
gunicorn master would otherwise hold the broker's, the console's and the CLI tools' imports
(aiohttp, cryptography, lark, ...), about 20 MB that every forked worker inherits.
"""

from __future__ import annotations

import importlib
from typing import Final

import click

from cascade import __version__

# name -> "module:attribute", in the order `cascade --help` lists them.
SUBCOMMANDS: Final = {
    "serve": "cascade.serve:serve",
    "broker": "cascade.broker.command:broker",
    "run": "cascade.runner.command:run",
    "send": "cascade.commands.send:send",
    "tail": "cascade.commands.tail:tail",
    "dlq": "cascade.commands.dlq:dlq",
    "trace": "cascade.commands.trace:trace",
    "catalog": "cascade.catalog.command:catalog",
}


class LazyGroup(click.Group):
    """A group whose subcommands live beside the code they drive, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None  # click answers "No such command" (exit 2)
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cascade")
def main() -> None:
    """Cascade: CloudEvents functions wired by Knative-style brokers and triggers."""

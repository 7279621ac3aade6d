"""`cascade` imports a subcommand only when it runs: a `cascade serve` master (and so each
worker it forks) must not hold the broker's, the console's or the tools' libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import click
from click.testing import CliRunner

from cascade.cli import SUBCOMMANDS, main

# Libraries of other subcommands, each several MB resident once imported.
NOT_FOR_SERVE = ("aiohttp", "cryptography", "lark", "jwt", "cascade.broker", "cascade.console")


def modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def imported(modules: set[str], package: str) -> bool:
    return any(name == package or name.startswith(f"{package}.") for name in modules)


def test_starting_cascade_imports_no_subcommand() -> None:
    modules = modules_after("import cascade.cli")
    assert not [m for m in ("cascade.serve", *NOT_FOR_SERVE) if imported(modules, m)]


def test_serve_loads_its_own_command_and_not_the_others() -> None:
    load_serve = "main.get_command(click.Context(main), 'serve')"
    modules = modules_after(f"import click\nfrom cascade.cli import main\n{load_serve}")
    assert "cascade.serve" in modules
    assert [m for m in NOT_FOR_SERVE if imported(modules, m)] == []


def test_help_lists_every_subcommand_with_its_summary() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = [
        line.split()[0]
        for line in result.output.split("Commands:")[1].splitlines()
        if line.startswith("  ")
    ]
    assert listed == list(SUBCOMMANDS)
    assert "Serve the function at PATH" in result.output


def test_every_subcommand_resolves_to_a_click_command() -> None:
    context = click.Context(main)
    for name in SUBCOMMANDS:
        command = main.get_command(context, name)
        assert isinstance(command, click.Command)
        assert command.name == name


def test_an_unknown_subcommand_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["serv"])
    assert result.exit_code == 2
    assert "No such command 'serv'" in result.output
    result = CliRunner().invoke(main, ["\x1b[31mserve"])
    assert result.exit_code == 2
    assert "No such command" in result.output

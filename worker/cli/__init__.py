"""Command-line entry point: one click group, one sub-command per tool.

Sub-commands are loaded lazily: a command imports only its own module (``regworker
run`` loads neither the operator tools nor the local stand-ins), and the top-level help
lists every command from the table below without importing any. Each tool module
exposes ``command``, a click command whose callback returns an exit code.
Exit codes: 0 ok, 1 failure, 2 bad usage or settings, 130 interrupted.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final, NamedTuple

import click
from dotenv import load_dotenv

from worker.core.settings import ENV_FILE


class Command(NamedTuple):
    module: str
    help: str


COMMANDS: Final = {
    "run": Command("worker.cli.run", "consume registration tokens until stopped"),
    "demo": Command("worker.cli.demo", "run the whole flow on a local AWS (moto) and the emulator"),
    "emulator": Command("worker.cli.emulator", "serve a local ResolveCustomer emulator"),
    "enqueue": Command("worker.cli.enqueue", "put registration tokens on the queue"),
    "resolve-customer": Command(
        "worker.cli.resolve_customer",
        "resolve a registration token, as `aws meteringmarketplace resolve-customer`",
    ),
    "dlq": Command("worker.cli.dlq", "inspect and replay the dead-letter queue"),
    "provision": Command(
        "worker.cli.provision", "create the queue, DLQ and sink the worker needs (idempotent)"
    ),
}

EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


def version() -> str:
    try:
        return metadata.version("regworker")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def unknown_command(name: str) -> str:
    close = difflib.get_close_matches(name, COMMANDS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown command '{name}'{hint} (commands: {', '.join(COMMANDS)})"


class LazyGroup(click.Group):
    """Imports a command's module only when that command is selected."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        command: click.Command = importlib.import_module(COMMANDS[cmd_name].module).command
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click says "No such command" without a suggestion; ours names the closest one.
        if args and args[0] not in COMMANDS and not args[0].startswith("-"):
            ctx.fail(unknown_command(args[0]))
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own would import every command's module for its help line.
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.help) for name, command in COMMANDS.items()])


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"regworker {version()}")
        ctx.exit(0)


@click.group(
    cls=LazyGroup,
    help="AWS Marketplace registration worker and its tools.",
    epilog="Exit codes: 0 ok, 1 failure, 2 bad usage or settings, 130 interrupted.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the installed version and exit.",
)
def cli() -> None:
    pass


def parse(argv: Sequence[str]) -> click.Context:
    """The context of the command ``argv`` selects, its options parsed and checked but
    nothing run (for tests and checks). Raises click's usage errors."""
    ctx = cli.make_context("regworker", list(argv))
    while isinstance(ctx.command, click.Group):
        # as Group.invoke does (click 8.2 deprecated the public protected_args)
        arguments = [*ctx._protected_args, *ctx.args]
        name, command, rest = ctx.command.resolve_command(ctx, arguments)
        assert command is not None
        assert name is not None
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def load_env_file(path: str = ENV_FILE) -> None:
    """Every command reads the same settings: the environment, then ``.env`` in the
    working directory for what the environment does not set (``regworker provision
    --output .env`` writes one, AWS endpoint and credentials included for LocalStack)."""
    if Path(path).is_file():
        load_dotenv(path, override=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` selects; its exit code (the console script exits with it)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    load_env_file()
    if not arguments:
        click.echo(cli.get_help(click.Context(cli, info_name="regworker", **cli.context_settings)))
        return EXIT_USAGE
    try:
        result: Any = cli.main(arguments, prog_name="regworker", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:  # click's word for KeyboardInterrupt or EOF
        print("regworker: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0

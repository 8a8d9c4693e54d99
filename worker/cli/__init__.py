"""Command-line entry point: one parser, one sub-command per tool.

Sub-commands are registered lazily: a command imports only its own module (``regworker
run`` loads neither the operator tools nor the local stand-ins), and the top-level help
lists every command from the table below without importing any. Each tool module
exposes ``register(subparsers)``, which adds its sub-command's full parser and sets
``handler`` (a function taking the parsed namespace and returning an exit code).
Exit codes: 0 ok, 1 failure, 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Final, NamedTuple

Handler = Callable[[argparse.Namespace], int]


class Command(NamedTuple):
    module: str
    help: str


COMMANDS: Final = {
    "run": Command("worker.cli.run", "consume registration tokens until stopped"),
    "demo": Command(
        "worker.local.demo", "run the whole flow on a local AWS (moto) and the emulator"
    ),
    "emulator": Command("worker.local.emulator", "serve a local ResolveCustomer emulator"),
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


def version() -> str:
    try:
        return metadata.version("regworker")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def unknown_command(name: str) -> str:
    close = difflib.get_close_matches(name, COMMANDS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown command '{name}'{hint} (commands: {', '.join(COMMANDS)})"


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the full sub-parser of ``selected`` only (its module imported)."""
    parser = argparse.ArgumentParser(
        prog="regworker",
        description="AWS Marketplace registration worker and its tools.",
        epilog="Exit codes: 0 ok, 1 failure, 2 bad usage or settings.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        if name == selected:
            importlib.import_module(command.module).register(subparsers)
        else:
            subparsers.add_parser(name, help=command.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    selected = arguments[0] if arguments and arguments[0] in COMMANDS else None
    parser = build_parser(selected)
    if not arguments:
        parser.print_help()
        return 2
    if selected is None and not arguments[0].startswith("-"):
        parser.error(unknown_command(arguments[0]))
    args = parser.parse_args(arguments)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:  # e.g. "regworker -- run": no sub-command was selected
        parser.error("give the command first, e.g. regworker run")
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("regworker: interrupted", file=sys.stderr)
        return 130

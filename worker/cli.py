"""Command-line entry point: one parser, one sub-command per tool.

Each tool module exposes ``register(subparsers)`` which adds its sub-command and sets
``handler`` (a function taking the parsed namespace and returning an exit code).
Exit codes: 0 ok, 1 failure, 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from worker import demo, dlq, emulator, enqueue, provision, resolve_customer, service

Handler = Callable[[argparse.Namespace], int]

_TOOLS = (service, demo, emulator, enqueue, resolve_customer, dlq, provision)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regworker",
        description="AWS Marketplace registration worker and its tools.",
        epilog="Exit codes: 0 ok, 1 failure, 2 bad usage or settings.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for tool in _TOOLS:
        tool.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("regworker: interrupted", file=sys.stderr)
        return 130

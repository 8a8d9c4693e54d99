"""What every click command here shares: help texts printed as written, and option types
that check a value with a plain function (its ValueError becomes click's usage error)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

T = TypeVar("T")


def _write_verbatim(formatter: click.HelpFormatter, text: str | None) -> None:
    if text:
        formatter.write_paragraph()
        formatter.write(text.rstrip("\n") + "\n")


class RawEpilogCommand(click.Command):
    """The epilog (examples, exit codes) keeps its own line breaks and indentation."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_verbatim(formatter, self.epilog)


class RawHelpCommand(RawEpilogCommand):
    """Description and epilog both printed as written (texts laid out by hand)."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_verbatim(formatter, self.help)


class RawHelpGroup(click.Group):
    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_verbatim(formatter, self.help)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_verbatim(formatter, self.epilog)


class Checked(click.ParamType[T]):
    """A value converted by ``convert``, whose ValueError message is the usage error."""

    def __init__(self, name: str, convert: Callable[[str], T]) -> None:
        self.name = name
        self._convert = convert

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> T:
        if not isinstance(value, str):
            return value  # type: ignore[no-any-return]  # a default, already converted
        try:
            return self._convert(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)

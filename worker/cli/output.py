"""What the commands draw with rich: the progress bar (enqueue, dlq replay) and tables
(dlq stats). Bars go to stderr and only on a terminal; tables are plain text (no box,
no colour) so that they read the same on a terminal, in a pipe and in the README."""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Final, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

PROGRESS_THRESHOLD: Final = 50  # shorter runs finish before a bar would help


class ProgressBar:
    """A one-line bar on stderr, drawn only for runs longer than ``threshold`` messages
    and only on a terminal; it appears with the first report and stays, complete, on exit.

    ``advance(count)`` suits a sender that reports each batch (``Enqueuer``), ``update(done,
    total, detail)`` one that tells where it stands (``Replayer``'s ``on_progress``);
    ``approximate`` marks a total that is SQS's estimate (``50/~200``)."""

    def __init__(
        self,
        total: int = 0,
        stream: TextIO | None = None,
        *,
        approximate: bool = False,
        threshold: int = PROGRESS_THRESHOLD,
    ) -> None:
        self._console = Console(file=stream or sys.stderr)
        self._threshold = threshold
        self._total = total
        self._done = 0
        counts = "{task.completed}/" + ("~" if approximate else "") + "{task.total}"
        self._progress = Progress(
            BarColumn(),
            TextColumn(counts),
            TextColumn("{task.fields[detail]}"),
            console=self._console,
            auto_refresh=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._progress.stop()
            self._task = None

    def advance(self, count: int) -> None:
        self._done += count
        self.update(self._done, self._total, "")

    def update(self, done: int, total: int, detail: str) -> None:
        if self._task is None:
            if total <= self._threshold or not self._console.is_terminal:
                return
            self._task = self._progress.add_task("", total=total, detail="")
            self._progress.start()
        self._progress.update(self._task, completed=done, total=total, detail=detail)
        self._progress.refresh()


def plain_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()
) -> str:
    """Columns two spaces apart, no box, no colour, no trailing blanks."""
    table = Table(box=None, padding=(0, 2, 0, 0), pad_edge=False, show_edge=False)
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if index in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=1000, color_system=None, highlight=False).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())

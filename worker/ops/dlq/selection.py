"""Which DLQ messages a replay moves, skips or refuses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from worker.ops.dlq.model import SKIPPED_BY_DEFAULT, DlqMessage

DEFAULT_MAX_REPLAYS: Final = 3


class Decision(StrEnum):
    MOVE = "move"
    SKIP = "skip"
    REFUSE = "refuse"


@dataclass(frozen=True)
class ReplayOptions:
    reasons: frozenset[str] = frozenset()  # empty: every reason
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    max_messages: int | None = None
    dry_run: bool = False
    rate: float | None = None  # messages per second
    include_terminal: bool = False  # the reasons SKIPPED_BY_DEFAULT too
    max_replays: int = DEFAULT_MAX_REPLAYS


def held_back(reason: str, options: ReplayOptions) -> bool:
    """Whether a reason that passes the --reason filter is still skipped: the reasons a
    plain replay leaves in the DLQ, unless named with --reason or --include-terminal."""
    return reason in SKIPPED_BY_DEFAULT and not (
        options.include_terminal or reason in options.reasons
    )


def decide(message: DlqMessage, options: ReplayOptions, now: datetime) -> Decision:
    reason = message.reason
    if options.reasons and reason not in options.reasons:
        return Decision.SKIP
    if held_back(reason, options):
        return Decision.SKIP
    if not _within_age(message.failed_at, options, now):
        return Decision.SKIP
    if message.replay_count >= options.max_replays:
        return Decision.REFUSE
    return Decision.MOVE


def _within_age(moment: datetime | None, options: ReplayOptions, now: datetime) -> bool:
    if options.older_than is None and options.newer_than is None:
        return True
    if moment is None:
        return False
    age = now - moment
    if options.older_than is not None and age < options.older_than:
        return False
    return options.newer_than is None or age <= options.newer_than


@dataclass
class Selection:
    """One received batch, sorted by decision."""

    move: list[DlqMessage] = field(default_factory=list)
    refuse: list[DlqMessage] = field(default_factory=list)
    skip: list[DlqMessage] = field(default_factory=list)


class Selector:
    """Sorts each batch by ``decide``, with the time read once per batch."""

    def __init__(
        self, options: ReplayOptions, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.options = options
        self._clock = clock

    def sort(self, batch: Sequence[DlqMessage]) -> Selection:
        now = self._clock()
        selection = Selection()
        for message in batch:
            decision = decide(message, self.options, now)
            if decision is Decision.MOVE:
                selection.move.append(message)
            elif decision is Decision.REFUSE:
                selection.refuse.append(message)
            else:
                selection.skip.append(message)
        return selection

    def held_back(self, message: DlqMessage) -> bool:
        """A skipped message that only the default left in the DLQ (see ``held_back``)."""
        reasons = self.options.reasons
        passes_filter = not reasons or message.reason in reasons
        return passes_filter and held_back(message.reason, self.options)

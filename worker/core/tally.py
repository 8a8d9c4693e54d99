"""The worker's counts: one place that each part of the worker adds to, read by the
run summary, the progress log, the tests and the metrics collector (which reads them at
scrape time, so a count costs one integer add on the hot path)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.core.metrics import Metrics


class Outcome(StrEnum):
    PUBLISHED = "published"
    DEAD_LETTERED = "dead_lettered"
    DUPLICATE = "duplicate"  # already published (idempotency table): dropped
    REQUEUED = "requeued"  # back on the queue with a longer visibility
    KEPT = "kept"  # not the message's fault: left on the queue
    COPY_IN_HAND = "copy_in_hand"  # delivered again while in hand or just settled: not handled

    @property
    def settled(self) -> bool:
        """The message is gone from the queue: its outcome is durable."""
        return self in {Outcome.PUBLISHED, Outcome.DEAD_LETTERED, Outcome.DUPLICATE}


@dataclass
class Tally:
    received: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    resolve_results: Counter[str] = field(default_factory=Counter)
    call_failures: Counter[str] = field(default_factory=Counter)
    idempotency: Counter[str] = field(default_factory=Counter)
    held: int = 0  # messages in hand waiting out a fault hold, now
    metrics: Metrics | None = field(default=None, repr=False)

    def count(self, outcome: Outcome, reason: str | None = None) -> None:
        self.outcomes[outcome.value] += 1
        if reason is not None:
            self.dead_letters[reason] += 1

    def resolved(self, result: str, seconds: float) -> None:
        """One ResolveCustomer call's answer: ``success``, ``throttled``, ``timeout``,
        ``connection_error``, or the error code."""
        self.resolve_results[result] += 1
        if self.metrics is not None:
            self.metrics.resolve_seconds.observe(seconds)

    def message_done(self, seconds: float) -> None:
        """A message from pickup to its outcome."""
        if self.metrics is not None:
            self.metrics.message_seconds.observe(seconds)

"""Pacing a replay: how fast it sends and when it stops."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from worker.aws.sqs_wire import MAX_BATCH
from worker.core.pacing import Turns


class StopFlag:
    """Counts stop requests (Ctrl-C); checked between batches."""

    def __init__(self) -> None:
        self.requests = 0
        self.shielded = False  # handing messages back: a second Ctrl-C waits for it

    def set(self) -> None:
        self.requests += 1

    def is_set(self) -> bool:
        return self.requests > 0

    @contextmanager
    def shield(self) -> Iterator[None]:
        self.shielded = True
        try:
            yield
        finally:
            self.shielded = False


@contextmanager
def sigint_stops(stop: StopFlag) -> Iterator[None]:
    """The first Ctrl-C asks the run to stop once the current batch is done; a second
    one abandons that batch (KeyboardInterrupt), but not the handing back of what is
    held; a third abandons even that. Lossless throughout: nothing unsent is deleted,
    and a message not handed back reappears when its hold lapses."""

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if stop.requests >= 3 or (stop.requests == 2 and not stop.shielded):
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class ReplayPacer:
    """Spaces batches so that at most ``rate`` messages go per second (None: no limit),
    by the worker's own rule (``pacing.Turns``), without catching up: each batch is due
    (the previous batch's size)/rate after the previous one was sent, so a slow scan
    is never followed by two batches at once."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._turns = Turns(catch_up=False)
        self._last_count = 0

    def batch_size(self) -> int:
        return MAX_BATCH if self._rate is None else max(1, min(MAX_BATCH, int(self._rate)))

    def wait(self, count: int, stop: StopFlag) -> bool:
        """Wait for room to send ``count`` messages; False if asked to stop meanwhile."""
        if self._rate is None:
            return not stop.is_set()
        spacing = self._last_count / self._rate
        due = self._turns.due(spacing)
        while (left := due - self._clock()) > 0:
            if stop.is_set():
                return False
            self._sleep(min(0.05, left))
        self._turns.take(due, self._clock(), spacing)
        self._last_count = count
        return not stop.is_set()

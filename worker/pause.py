"""A worker-wide pause: after a configuration fault or an outage nobody should poll."""

from __future__ import annotations

import asyncio
import time


class Pause:
    def __init__(self) -> None:
        self._until = 0.0

    def pause_for(self, seconds: float) -> None:
        self._until = max(self._until, time.monotonic() + seconds)

    @property
    def remaining(self) -> float:
        return max(0.0, self._until - time.monotonic())

    async def wait(self, stop: asyncio.Event) -> None:
        """Return when the pause is over, or at once when ``stop`` is set."""
        while (remaining := self.remaining) > 0 and not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=remaining)
            except TimeoutError:
                continue

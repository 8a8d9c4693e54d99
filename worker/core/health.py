"""What ``/healthz`` (liveness) and ``/readyz`` (readiness) answer.

The worker marks what it does: the event loop ticks every second, the receive loop marks
each receive and each settled message, the service marks when its clients are built and
when it starts shutting down. The HTTP server reads the marks from its own thread, so a
stalled event loop still gets an answer: 503, not a timeout.

- **Live** unless the event loop has not ticked for ``LOOP_STALL_SECONDS`` (a blocking
  call, a deadlock) or the worker has made no progress for ``liveness_seconds`` while it
  should (no receive, no settled message, no fault hold, not stopping). A restart is the
  remedy for both; a fault hold is not a reason to restart, so it keeps the worker live.
- **Ready** once the clients are built, and not during a fault hold or shutdown: the
  worker cannot do its job then, and an orchestrator should not count it as capacity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, NamedTuple

from worker.core.fault_hold import FaultHold

LOOP_TICK_SECONDS: Final = 1.0
LOOP_STALL_SECONDS: Final = 10.0

Clock = Callable[[], float]


class Verdict(NamedTuple):
    ok: bool
    reason: str


class Health:
    def __init__(self, liveness_seconds: float, clock: Clock = time.monotonic) -> None:
        self.liveness_seconds = liveness_seconds
        self._clock = clock
        now = clock()
        self._loop_tick = now
        self._progress = now
        self._clients_ready = False
        self._stopping = False
        self._hold: FaultHold | None = None

    def clients_built(self, hold: FaultHold) -> None:
        self._clients_ready = True
        self._hold = hold
        self.progressed()

    def stopping(self) -> None:
        self._stopping = True

    def loop_ticked(self) -> None:
        self._loop_tick = self._clock()

    def progressed(self) -> None:
        """A receive answered, a message settled: the worker is doing its job."""
        self._progress = self._clock()

    def live(self) -> Verdict:
        now = self._clock()
        stalled = now - self._loop_tick
        if stalled > LOOP_STALL_SECONDS:
            return Verdict(False, f"event loop stalled for {stalled:.0f}s")
        idle = now - self._progress
        if idle > self.liveness_seconds and not (self._stopping or self._holding()):
            return Verdict(False, f"no receive and no settled message for {idle:.0f}s")
        return Verdict(True, "live")

    def ready(self) -> Verdict:
        if self._stopping:
            return Verdict(False, "shutting down")
        if not self._clients_ready:
            return Verdict(False, "starting: clients and the start-up check")
        if self._holding():
            return Verdict(False, f"fault hold: {self._held_components()}")
        return Verdict(True, "ready")

    def _holding(self) -> bool:
        return self._hold is not None and self._hold.active

    def _held_components(self) -> str:
        try:  # read from the server's thread while the event loop may change it
            return ", ".join(sorted(self._hold.errors_by_component())) if self._hold else ""
        except RuntimeError:
            return "changing"


async def tick_loop(health: Health) -> None:
    """Mark the event loop alive every second, until cancelled."""
    while True:
        health.loop_ticked()
        await asyncio.sleep(LOOP_TICK_SECONDS)

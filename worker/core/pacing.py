"""The one rule for spacing turns at a rate, shared by the worker's ResolveCustomer pacer
and the DLQ replay's: a turn is due one spacing after the last; idle time banks no burst
(after a quiet spell the turn counts from now, not from when it was due); and, for the
worker's pacer, a wake-up a little late does not slow the rate down."""

from __future__ import annotations

import math


class Turns:
    """When the next turn is due; the waiting (asyncio or a plain sleep) is the caller's.
    ``catch_up=False``: a late turn is not made up for; the next comes a whole spacing
    after it, so no two turns are ever closer than one spacing."""

    def __init__(self, *, catch_up: bool = True) -> None:
        self._last = -math.inf
        self._catch_up = catch_up

    def due(self, spacing: float) -> float:
        """The earliest time of the next turn, ``spacing`` seconds after the last."""
        return self._last + spacing

    def take(self, due: float, now: float, spacing: float) -> None:
        """Record the turn that was due at ``due``, taken at ``now``."""
        self._last = due if self._catch_up and now - due < spacing else now

"""The one rule for spacing turns at a rate, shared by the worker's ResolveCustomer pacer
and the DLQ replay's: a turn is due one spacing after the last; a wake-up a little late
does not slow the rate down, and idle time banks no burst (after a quiet spell the turn
counts from now, not from when it was due)."""

from __future__ import annotations

import math


class Turns:
    """When the next turn is due; the waiting (asyncio or a plain sleep) is the caller's."""

    def __init__(self) -> None:
        self._last = -math.inf

    def due(self, spacing: float) -> float:
        """The earliest time of the next turn, ``spacing`` seconds after the last."""
        return self._last + spacing

    def take(self, due: float, now: float, spacing: float) -> None:
        """Record the turn that was due at ``due``, taken at ``now``."""
        self._last = due if now - due < spacing else now

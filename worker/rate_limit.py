"""An adaptive rate cap for ResolveCustomer.

AWS publishes no TPS quota for ResolveCustomer, so the worker spaces its calls at a
configured rate and adapts: it halves the rate on every throttle and creeps back up
on success (additive increase, multiplicative decrease, as TCP does).
"""

from __future__ import annotations

import asyncio
import time


class AdaptiveRateLimiter:
    def __init__(self, max_rate: float, min_rate: float = 0.5) -> None:
        self.max_rate = max_rate
        self.min_rate = min(min_rate, max_rate)
        self.rate = max_rate
        self._next_slot = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for this caller's slot; slots are 1/rate seconds apart."""
        async with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self.rate
        if slot > now:
            await asyncio.sleep(slot - now)

    def on_success(self) -> None:
        self.rate = min(self.max_rate, self.rate + self.max_rate / 50)

    def on_throttle(self) -> None:
        self.rate = max(self.min_rate, self.rate / 2)

"""A deterministic simulation of flow controllers sharing one account quota.

Time is a fake clock; each controller sends paced calls, the quota is a token bucket
like the emulator's ``--tps`` (capacity one second of calls), and every answer comes
back after ``latency`` seconds. No sockets, no sleeping: a minute runs in milliseconds.

Work is either endless (``backlog=None``: always a call to make) or a list of messages,
each throttled a given number of times whatever the rate (the emulator's
``throttle-N-`` tokens); a throttled message is retried ``retry_after`` seconds later.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from worker.flow_control import FlowController


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Bucket:
    rate: float
    tokens: float = 0.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = max(1.0, self.rate)

    def take(self, now: float) -> bool:
        if self.rate <= 0:
            return True
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class Tally:
    successes: list[float] = field(default_factory=list)
    throttles: list[float] = field(default_factory=list)

    def successes_between(self, start: float, end: float) -> int:
        return sum(start <= t < end for t in self.successes)

    def throttles_between(self, start: float, end: float) -> int:
        return sum(start <= t < end for t in self.throttles)


@dataclass
class Simulation:
    controllers: list[FlowController]
    clock: FakeClock
    quota: float = 0.0
    latency: float = 0.02
    retry_after: float = 0.3
    tallies: list[Tally] = field(init=False)
    _events: list[tuple[float, int, int, float, int]] = field(init=False, default_factory=list)
    _bucket: Bucket = field(init=False)
    _backlog: deque[int] | None = field(init=False, default=None)
    _idle: set[int] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.tallies = [Tally() for _ in self.controllers]
        self._bucket = Bucket(self.quota)

    def run(
        self,
        seconds: float,
        *,
        starts: list[float] | None = None,
        backlog: list[int] | None = None,
    ) -> float:
        """Run until ``seconds`` or until the backlog is done; returns the end time.
        ``backlog``: one entry per message, how many times it is throttled first."""
        self._backlog = None if backlog is None else deque(backlog)
        for index, start in enumerate(starts or [0.0] * len(self.controllers)):
            heapq.heappush(self._events, (start, 1, index, 0.0, 0))
        while self._events:
            when, kind, index, sent_at, extra = heapq.heappop(self._events)
            if when > seconds:
                return seconds
            self.clock.now = when
            if kind == 0:
                self._answer(index, sent_at, extra)
            elif kind == 1:
                self._send(index)
            else:  # a throttled message comes back for another try
                self._requeue(extra)
            if self._backlog is not None and self._finished():
                return when
        return self.clock.now

    def _finished(self) -> bool:
        pending = any(kind != 1 for _, kind, *_ in self._events)
        return not self._backlog and not pending

    def _send(self, index: int) -> None:
        controller = self.controllers[index]
        if self._backlog is None:
            throttles_left = 0
        elif self._backlog:
            throttles_left = self._backlog.popleft()
        else:
            self._idle.add(index)
            return
        sent = controller.on_send()
        refused = not self._bucket.take(self.clock.now) or throttles_left > 0
        code = throttles_left if refused else -1
        heapq.heappush(self._events, (self.clock.now + self.latency, 0, index, sent, code))
        heapq.heappush(self._events, (self.clock.now + 1.0 / controller.rate, 1, index, 0.0, 0))

    def _answer(self, index: int, sent_at: float, code: int) -> None:
        throttled = code >= 0
        self.controllers[index].on_answer(sent_at, throttled=throttled)
        tally = self.tallies[index]
        (tally.throttles if throttled else tally.successes).append(self.clock.now)
        if throttled and self._backlog is not None:
            left = max(0, code - 1)
            heapq.heappush(self._events, (self.clock.now + self.retry_after, 2, index, 0.0, left))

    def _requeue(self, throttles_left: int) -> None:
        if self._backlog is None:
            return
        self._backlog.appendleft(throttles_left)
        for index in self._idle:
            heapq.heappush(self._events, (self.clock.now, 1, index, 0.0, 0))
        self._idle.clear()

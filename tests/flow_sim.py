"""A deterministic simulation of flow controllers sharing one account quota.

Time is a fake clock; no sockets, no sleeping: a minute runs in milliseconds. Each
controller stands for one worker: its pacer sends calls 1/rate apart; a message holds
one of ``max_in_flight`` slots from its first call until it succeeds, and a throttled
call is retried after a jittered exponential wait (as the resolver's tenacity does),
still holding its slot, so a worker slowed by retries sends less than its rate allows.
The quota is a token bucket like the emulator's ``--tps`` (capacity one second of
calls); answers come back ``latency`` seconds after the call.

Work is either endless (``backlog=None``) or a list of messages, each throttled a given
number of times whatever the rate (the emulator's ``throttle-N-`` tokens).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

from worker.core.flow_control import FlowController
from worker.local.emulator import TokenBucket

SEND, ANSWER, RETRY = 0, 1, 2


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Tally:
    successes: list[float] = field(default_factory=list)
    throttles: list[float] = field(default_factory=list)

    def successes_between(self, start: float, end: float) -> int:
        return sum(start <= t < end for t in self.successes)

    def throttles_between(self, start: float, end: float) -> int:
        return sum(start <= t < end for t in self.throttles)


@dataclass
class Message:
    throttles_left: int
    tries: int = 0


@dataclass
class Worker:
    controller: FlowController
    tally: Tally = field(default_factory=Tally)
    in_flight: int = 0
    ready: deque[Message] = field(default_factory=deque)  # retries whose wait is over
    ticking: bool = False


@dataclass
class Simulation:
    controllers: list[FlowController]
    clock: FakeClock
    quota: float = 0.0
    latency: float = 0.02
    max_in_flight: int = 50
    retry_base: float = 0.2
    retry_max: float = 5.0
    seed: int = 1
    workers: list[Worker] = field(init=False)
    _events: list[tuple[float, int, int, int, float, Message | None]] = field(
        init=False, default_factory=list
    )
    _order: int = field(init=False, default=0)
    _bucket: TokenBucket | None = field(init=False)
    _backlog: deque[int] | None = field(init=False, default=None)
    _pending: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.workers = [Worker(controller) for controller in self.controllers]
        # The emulator's own --tps bucket; no quota, no bucket.
        self._bucket = TokenBucket.full(self.quota, 0.0) if self.quota > 0 else None
        self._rng = random.Random(self.seed)

    @property
    def tallies(self) -> list[Tally]:
        return [worker.tally for worker in self.workers]

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
        self._pending = 0 if backlog is None else len(backlog)
        for index, start in enumerate(starts or [0.0] * len(self.workers)):
            self._schedule(start, SEND, index)
        while self._events:
            when, kind, _, index, sent_at, message = heapq.heappop(self._events)
            if when > seconds:
                return seconds
            self.clock.now = when
            worker = self.workers[index]
            if kind == SEND:
                self._send(index, worker)
            elif kind == ANSWER and message is not None:
                self._answer(index, worker, sent_at, message)
            elif message is not None:  # RETRY: its wait is over
                worker.ready.append(message)
                self._wake(index, worker)
            if self._backlog is not None and self._pending == 0:
                return when
        return self.clock.now

    def _schedule(
        self,
        when: float,
        kind: int,
        index: int,
        sent_at: float = 0.0,
        message: Message | None = None,
    ) -> None:
        self._order += 1
        heapq.heappush(self._events, (when, kind, self._order, index, sent_at, message))

    def _next_message(self, worker: Worker) -> Message | None:
        if worker.ready:
            return worker.ready.popleft()
        if worker.in_flight >= self.max_in_flight:
            return None
        if self._backlog is None:
            message = Message(0)
        elif self._backlog:
            message = Message(self._backlog.popleft())
        else:
            return None
        worker.in_flight += 1
        return message

    def _send(self, index: int, worker: Worker) -> None:
        message = self._next_message(worker)
        if message is None:
            worker.ticking = False  # app-limited: wait for a slot or a retry
            return
        worker.ticking = True
        sent_at = worker.controller.on_send()
        over_quota = self._bucket is not None and not self._bucket.take(self.clock.now)
        refused = over_quota or message.throttles_left > 0
        message.throttles_left = max(0, message.throttles_left - 1) if refused else -1
        self._schedule(self.clock.now + self.latency, ANSWER, index, sent_at, message)
        self._schedule(self.clock.now + 1.0 / worker.controller.rate, SEND, index)

    def _answer(self, index: int, worker: Worker, sent_at: float, message: Message) -> None:
        throttled = message.throttles_left >= 0
        worker.controller.on_answer(sent_at, throttled=throttled, retry=message.tries > 0)
        if not throttled:
            worker.tally.successes.append(self.clock.now)
            worker.in_flight -= 1
            self._pending -= 1
            self._wake(index, worker)
            return
        worker.tally.throttles.append(self.clock.now)
        message.tries += 1
        ceiling = min(self.retry_max, self.retry_base * 2**message.tries)
        self._schedule(self.clock.now + self._rng.uniform(0, ceiling), RETRY, index, 0.0, message)

    def _wake(self, index: int, worker: Worker) -> None:
        if not worker.ticking:
            worker.ticking = True
            self._schedule(self.clock.now, SEND, index)

"""The receive loop: several long polls in flight, continuous refill, bounded.

Receivers ask for only as many messages as there are free slots, so the worker never
holds more than ``max_in_flight`` messages, and each message starts as soon as it
arrives: there is no batch-at-a-time stall behind a slow message.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from worker.errors import RegworkerError
from worker.faults import classify_aws_error, describe
from worker.handler import MessageHandler
from worker.pause import Pause
from worker.settings import Settings
from worker.sqs import MAX_BATCH, ReceivedMessage, SourceQueue

log = structlog.get_logger(__name__)

RECEIVE_BACKOFF_MAX = 30.0


class ReceiveLoopDied(RegworkerError):
    """Polling stopped on an unexpected error; the process must exit non-zero."""


class Slots:
    """A counting limit that hands out up to n slots at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._freed = asyncio.Event()

    async def take_up_to(self, wanted: int) -> int:
        while self.in_use >= self.limit:
            self._freed.clear()
            await self._freed.wait()
        taken = min(wanted, self.limit - self.in_use)
        self.in_use += taken
        return taken

    def give_back(self, count: int) -> None:
        self.in_use -= count
        self._freed.set()


class Consumer:
    def __init__(
        self, settings: Settings, queue: SourceQueue, handler: MessageHandler, pause: Pause
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._handler = handler
        self._pause = pause
        self._slots = Slots(settings.max_in_flight)
        self._tasks: set[asyncio.Task[object]] = set()
        self._empty_polls = 0

    @property
    def in_flight(self) -> int:
        """Messages being handled (receivers also hold slots while they poll)."""
        return len(self._tasks)

    async def run(self, stop: asyncio.Event, *, until_empty: bool = False) -> None:
        """Consume until ``stop`` is set (or, with ``until_empty``, the queue is drained)."""
        receivers = [
            asyncio.create_task(self._receive_loop(stop), name=f"receiver-{n}")
            for n in range(self._settings.receive_concurrency)
        ]
        watchers: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait(), name="stop")]
        if until_empty:
            watchers.append(asyncio.create_task(self._stop_when_drained(stop), name="drained"))
        done, _ = await asyncio.wait([*receivers, *watchers], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for task in [*receivers, *watchers]:
            task.cancel()
        await asyncio.gather(*receivers, *watchers, return_exceptions=True)
        await self._drain()
        for task in done:
            if task in receivers and not task.cancelled() and task.exception() is not None:
                raise ReceiveLoopDied(f"receive loop died: {task.exception()!r}")

    async def _receive_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            await self._pause.wait(stop)
            wanted = await self._slots.take_up_to(MAX_BATCH)
            try:
                messages = await self._queue.receive(
                    wanted,
                    self._settings.wait_time_seconds,
                    self._settings.visibility_timeout_seconds,
                )
            except Exception as error:
                self._slots.give_back(wanted)
                if classify_aws_error(error) is None:
                    raise
                failures += 1
                await self._back_off(stop, failures, error)
                continue
            if failures:
                log.info("receive_recovered", after_failures=failures)
            failures = 0
            self._slots.give_back(wanted - len(messages))
            self._empty_polls = 0 if messages else self._empty_polls + 1
            for message in messages:
                self._start(message)

    async def _back_off(self, stop: asyncio.Event, failures: int, error: Exception) -> None:
        delay = min(RECEIVE_BACKOFF_MAX, 0.5 * 2 ** min(failures, 10))
        log.warning(
            "receive_failed", error=describe(error), failures=failures, retry_in_seconds=delay
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)

    def _start(self, message: ReceivedMessage) -> None:
        task: asyncio.Task[object] = asyncio.create_task(
            self._handler.handle(message), name=f"message-{message.message_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        self._slots.give_back(1)
        if not task.cancelled() and (error := task.exception()) is not None:
            # A bug, not a message fault: the message is not deleted and comes back.
            log.error("handler_crashed", task=task.get_name(), exc_info=error)

    async def _stop_when_drained(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.5)
            if self._tasks or not self._empty_polls:
                continue
            try:
                depth = await self._queue.approximate_depth()
            except Exception as error:
                log.warning("queue_depth_failed", error=describe(error))
                continue
            if depth == 0 and not self._tasks:
                log.info("queue_drained")
                return

    async def _drain(self) -> None:
        """Let in-flight messages finish within the grace period, then cancel the rest
        (they were not deleted, so they simply come back later)."""
        if not self._tasks:
            return
        grace = self._settings.shutdown_grace_seconds
        log.info("draining", in_flight=len(self._tasks), grace_seconds=grace)
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("drain_timeout_cancelled", cancelled=len(pending))
            await asyncio.wait(pending)

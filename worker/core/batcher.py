"""Micro-batching for the AWS batch APIs (10 entries a call).

Callers submit one item and await its own outcome; a background task groups items
into batches of at most ``max_size`` entries (and ``max_bytes``) and sends several
batches at once. The send function returns one outcome per item, because batch APIs
can fail part of a batch.

Batching costs latency only when there is something to batch (Nagle's rule): with no
send in flight, whatever is queued goes at once, even a single item; while sends are in
flight, a batch waits up to ``linger`` seconds to fill.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog

Item = TypeVar("Item")
Result = TypeVar("Result")

log = structlog.get_logger(__name__)

SendBatch = Callable[[Sequence[Item]], Awaitable[Sequence[Result | BaseException]]]


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    size: int
    future: asyncio.Future[Result] = field(default_factory=lambda: asyncio.Future())


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        name: str,
        send: SendBatch[Item, Result],
        *,
        max_size: int = 10,
        max_bytes: int = 256 * 1024,
        linger: float = 0.05,
        concurrency: int = 4,
        size_of: Callable[[Item], int] = lambda _item: 0,
    ) -> None:
        self.name = name
        self._send = send
        self._max_size = max_size
        self._max_bytes = max_bytes
        self._linger = linger
        self._size_of = size_of
        self._queue: asyncio.Queue[_Pending[Item, Result]] = asyncio.Queue(maxsize=max_size * 100)
        self._senders = asyncio.Semaphore(concurrency)
        self._sends: set[asyncio.Task[None]] = set()
        self._collector: asyncio.Task[None] | None = None
        # Set on a new item and when a send finishes: what a lingering batch waits for.
        self._wake = asyncio.Event()

    async def submit(self, item: Item) -> Result:
        """Queue one item and wait for its own outcome (raises its own error)."""
        pending: _Pending[Item, Result] = _Pending(item, self._size_of(item))
        await self._queue.put(pending)
        self._wake.set()
        self._ensure_collector()
        return await pending.future

    def _ensure_collector(self) -> None:
        if self._collector is None or self._collector.done():
            # Started by a submit, but no submitter's: its lines and its sends are the
            # batch's, not the first message's (its log context and its span).
            self._collector = asyncio.create_task(
                self._collect(), name=f"batcher-{self.name}", context=contextvars.Context()
            )

    async def close(self) -> None:
        """Send what is queued and wait for it, then stop the collector. An item that
        slips in while the collector stops is still sent."""
        while True:
            await self._queue.join()  # every item's send has finished
            if self._collector is not None:
                self._collector.cancel()
                await asyncio.gather(self._collector, return_exceptions=True)
                self._collector = None
            if self._queue.empty():
                return
            self._ensure_collector()

    async def _collect(self) -> None:
        carry: _Pending[Item, Result] | None = None
        while True:
            first = carry or await self._queue.get()
            batch, carry = await self._fill([first])
            await self._senders.acquire()
            task = asyncio.create_task(self._dispatch(batch))
            self._sends.add(task)
            task.add_done_callback(self._send_finished)

    def _send_finished(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self._wake.set()

    async def _fill(
        self, batch: list[_Pending[Item, Result]]
    ) -> tuple[list[_Pending[Item, Result]], _Pending[Item, Result] | None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger
        total = batch[0].size
        while len(batch) < self._max_size:
            if self._queue.empty():
                timeout = deadline - loop.time()
                if not self._sends or timeout <= 0:
                    break  # nothing on the wire: waiting would only add latency
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    break
                continue
            nxt = self._queue.get_nowait()
            if total + nxt.size > self._max_bytes:
                return batch, nxt
            batch.append(nxt)
            total += nxt.size
        return batch, None

    async def _dispatch(self, batch: list[_Pending[Item, Result]]) -> None:
        try:
            outcomes = await self._send([pending.item for pending in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except Exception as error:  # the whole call failed: every item shares the error
            log.warning("batch_failed", batcher=self.name, size=len(batch), error=str(error))
            outcomes = [error] * len(batch)
        except BaseException:
            for pending in batch:
                self._queue.task_done()
                pending.future.cancel()
            raise
        finally:
            self._senders.release()
        for pending, outcome in zip(batch, outcomes, strict=True):
            self._queue.task_done()
            if pending.future.done():
                continue
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

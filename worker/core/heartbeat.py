"""Keep messages in hand invisible while they are worked on.

Every few seconds, the visibility of each held message that is past half its timeout is
extended, all of them together through ``ChangeMessageVisibilityBatch``, so a slow
message (retries, a slow publish) is never handed to a second consumer. A receipt
handle that has already expired is no longer extended, never raised; its message stays
in hand, so a new delivery of it is adopted (``adopt``), not handled twice. A new
delivery of a message settled here moments ago is recognised too (``settled_recently``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Final

import structlog

from worker.aws.sqs_wire import BatchEntryError, ReceivedMessage
from worker.core.faults import describe
from worker.core.ports import MessageQueue

log = structlog.get_logger(__name__)

GONE = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        "InvalidParameterValue",
    }
)


# About 20 MB (ids, expiries, the dict); at 200 messages/s, 8 minutes of them.
SETTLED_MEMORY: Final = 100_000


class VisibilityHeartbeat:
    def __init__(
        self,
        queue: MessageQueue,
        visibility_timeout: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._timeout = visibility_timeout
        self._clock = clock
        self._held: dict[str, tuple[ReceivedMessage, float]] = {}
        self._settling: dict[str, ReceivedMessage] = {}
        # In hand, its receipt refused by a beat (it ran out): no longer extended.
        self._lapsed: dict[str, ReceivedMessage] = {}
        # Settled here, until when a new delivery of it is still a copy: a delete sent
        # with a receipt SQS had just replaced succeeds but deletes nothing, and the
        # receive that took the new delivery may answer just after the delete; a copy
        # whose own delete failed comes back a visibility timeout later. Two timeouts,
        # at most SETTLED_MEMORY messages (the latest).
        self._settled: OrderedDict[str, float] = OrderedDict()
        self.extensions = 0

    def hold(self, message: ReceivedMessage, received_at: float | None = None) -> None:
        """Watch ``message`` from ``received_at`` (a ``clock()`` reading, now by
        default), when its visibility timeout began. A message already watched keeps
        its own clock: holding it again must not pretend it has a full timeout left;
        nor is a lapsed one (its receipt gone) watched again."""
        if message.message_id not in self._held and message.message_id not in self._lapsed:
            start = self._clock() if received_at is None else received_at
            self._held[message.message_id] = (message, start + self._timeout)

    def adopt(self, copy: ReceivedMessage) -> bool:
        """``copy`` is a new delivery of a message in hand (watched, or being settled):
        the message in hand takes its receipt and receive count, and its visibility
        clock restarts with that receive. False when the message is not in hand."""
        held = self._held.get(copy.message_id)
        lapsed = self._lapsed.pop(copy.message_id, None)
        message = held[0] if held else lapsed or self._settling.get(copy.message_id)
        if message is None:
            return False
        message.receipt_handle = copy.receipt_handle
        message.receive_count = max(message.receive_count, copy.receive_count)
        if held or lapsed:  # watched again from this receive
            self._held[copy.message_id] = (message, self._clock() + self._timeout)
        return True

    @contextlib.contextmanager
    def settling(self, message: ReceivedMessage) -> Iterator[None]:
        """While ``message`` is deleted: no longer extended, but still in hand, so a copy
        delivered meanwhile is adopted rather than handled again."""
        self.release(message)
        self._settling[message.message_id] = message
        try:
            yield
        finally:
            self._settling.pop(message.message_id, None)
            self.note_settled(message.message_id)

    def settled_recently(self, copy: ReceivedMessage) -> bool:
        """``copy`` is a new delivery of a message settled here moments ago: delete it,
        do not handle it again."""
        return self._settled.get(copy.message_id, -math.inf) > self._clock()

    def note_settled(self, message_id: str) -> None:
        """Remember ``message_id`` as settled here (again, from now)."""
        now = self._clock()
        self._settled[message_id] = now + 2 * self._timeout
        self._settled.move_to_end(message_id)
        # Their order is their expiry's (one window for all): forget from the front.
        while self._settled and (
            len(self._settled) > SETTLED_MEMORY or next(iter(self._settled.values())) <= now
        ):
            self._settled.popitem(last=False)

    @property
    def in_hand(self) -> int:
        """Messages in hand now: received, not yet settled or handed back."""
        return len(self._held) + len(self._lapsed)

    def release(self, message: ReceivedMessage) -> None:
        """Stop watching this delivery (not a later one of the same message)."""
        held = self._held.get(message.message_id)
        if held is not None and held[0] is message:
            del self._held[message.message_id]
        if self._lapsed.get(message.message_id) is message:
            del self._lapsed[message.message_id]

    async def run(self) -> None:
        """Beat until cancelled."""
        interval = max(0.5, self._timeout / 5)
        while True:
            await asyncio.sleep(interval)
            await self.beat()

    async def beat(self) -> None:
        now = self._clock()
        due = [
            message for message, expires in self._held.values() if expires - now < self._timeout / 2
        ]
        if not due:
            return
        receipts = [message.receipt_handle for message in due]
        results = await asyncio.gather(
            *(self._queue.change_visibility(message, self._timeout) for message in due),
            return_exceptions=True,
        )
        renewed_until = self._clock() + self._timeout
        for message, receipt, result in zip(due, receipts, results, strict=True):
            held = self._held.get(message.message_id)
            if held is None or held[0] is not message or message.receipt_handle != receipt:
                continue  # settled meanwhile, or delivered again (its clock restarted)
            if isinstance(result, BatchEntryError) and result.code in GONE:
                # The receipt handle is no longer valid (expired, or the message was
                # deleted): nothing left to extend, but the message is still in hand,
                # so a copy delivered now is adopted. Other entry failures are tried
                # again on the next beat.
                log.warning(
                    "visibility_extend_refused",
                    message_id=message.message_id,
                    error=describe(result),
                )
                del self._held[message.message_id]
                self._lapsed[message.message_id] = message
            elif isinstance(result, BaseException):
                log.warning("visibility_extend_failed", error=describe(result))
            else:
                self._held[message.message_id] = (message, renewed_until)
                self.extensions += 1

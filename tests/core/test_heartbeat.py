"""The visibility heartbeat, over a queue whose visibility calls answer as told."""

from __future__ import annotations

import asyncio

import pytest

from worker.aws.sqs import SourceQueue
from worker.aws.sqs_wire import BatchEntryError, ReceivedMessage
from worker.core import heartbeat as heartbeat_module
from worker.core.heartbeat import VisibilityHeartbeat


class ScriptedQueue(SourceQueue):
    """Visibility changes answer from a script: None (done) or an entry error."""

    def __init__(self, answers: list[BatchEntryError | None]) -> None:
        self.answers = answers
        self.calls = 0

    async def change_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        self.calls += 1
        answer = self.answers.pop(0)
        if answer is not None:
            raise answer


async def test_a_passing_entry_failure_keeps_the_message_watched() -> None:
    """An InternalError entry (not the sender's fault) is tried again on the next beat;
    only a receipt handle that is gone drops the message from the watch."""
    queue = ScriptedQueue(
        [
            BatchEntryError("InternalError", "try again", sender_fault=False),
            None,
            BatchEntryError("ReceiptHandleIsInvalid", "gone", sender_fault=True),
        ]
    )
    heartbeat = VisibilityHeartbeat(queue, visibility_timeout=10)
    message = ReceivedMessage("m1", "handle", "body", 1)
    heartbeat.hold(message, received_at=0.0)  # long past half its timeout: due at once
    await heartbeat.beat()
    assert heartbeat.extensions == 0
    await heartbeat.beat()  # still watched, tried again
    assert (queue.calls, heartbeat.extensions) == (2, 1)
    heartbeat.release(message)
    heartbeat.hold(message, received_at=0.0)
    await heartbeat.beat()
    await heartbeat.beat()  # dropped: no fourth call
    assert queue.calls == 3


class SlowQueue(SourceQueue):
    """A visibility change that waits for ``go``, then refuses a receipt that is no
    longer the latest (as SQS does once the message was delivered again)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.latest = "old"

    async def change_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        receipt = message.receipt_handle
        await self.go.wait()
        if receipt != self.latest:
            raise BatchEntryError("ReceiptHandleIsInvalid", "not the latest", sender_fault=True)


async def test_a_copy_adopted_during_a_beat_keeps_the_message_watched() -> None:
    """The beat extends with the old receipt; meanwhile the message is delivered again
    and adopted: the beat's refusal speaks of the old receipt, not of the message."""
    queue = SlowQueue()
    heartbeat = VisibilityHeartbeat(queue, visibility_timeout=10)
    message = ReceivedMessage("m1", "old", "body", 1)
    heartbeat.hold(message, received_at=0.0)
    beat = asyncio.create_task(heartbeat.beat())
    await asyncio.sleep(0.01)  # the extension is under way
    queue.latest = "new"
    assert heartbeat.adopt(ReceivedMessage("m1", "new", "body", 2))
    queue.go.set()
    await beat
    assert heartbeat.in_hand == 1
    assert (message.receipt_handle, message.receive_count) == ("new", 2)


async def test_a_message_being_settled_is_still_in_hand_for_a_copy() -> None:
    heartbeat = VisibilityHeartbeat(ScriptedQueue([]), visibility_timeout=10)
    message = ReceivedMessage("m1", "old", "body", 1)
    heartbeat.hold(message)
    with heartbeat.settling(message):
        assert heartbeat.in_hand == 0  # no longer extended
        assert heartbeat.adopt(ReceivedMessage("m1", "new", "body", 2))
    assert message.receipt_handle == "new"
    assert not heartbeat.adopt(ReceivedMessage("m1", "newer", "body", 3))


async def test_a_copy_delivered_after_the_beat_was_refused_is_still_adopted() -> None:
    """The other order: the beat's refusal of the old receipt is read first, then the
    copy arrives. The message is no longer extended, but it is still in hand."""
    gone = BatchEntryError("ReceiptHandleIsInvalid", "gone", sender_fault=True)
    queue = ScriptedQueue([gone, None])
    heartbeat = VisibilityHeartbeat(queue, visibility_timeout=10)
    message = ReceivedMessage("m1", "old", "body", 1)
    heartbeat.hold(message, received_at=0.0)
    await heartbeat.beat()
    await heartbeat.beat()  # not extended while its receipt is gone
    assert (queue.calls, heartbeat.in_hand) == (1, 1)
    assert heartbeat.adopt(ReceivedMessage("m1", "new", "body", 2))
    assert message.receipt_handle == "new"
    heartbeat.release(message)
    assert heartbeat.in_hand == 0
    assert not heartbeat.adopt(ReceivedMessage("m1", "newer", "body", 3))


async def test_releasing_an_old_delivery_leaves_a_new_one_watched() -> None:
    """A requeued message can come back to this worker before its first handling has
    finished: that handling's release is of its own delivery, not of the new one."""
    heartbeat = VisibilityHeartbeat(ScriptedQueue([]), visibility_timeout=10)
    first = ReceivedMessage("m1", "receipt-1", "body", 1)
    heartbeat.hold(first)
    heartbeat.release(first)  # requeued: out of hand at once
    second = ReceivedMessage("m1", "receipt-2", "body", 2)
    heartbeat.hold(second)  # delivered again, handled in a lane of its own
    heartbeat.release(first)  # the first handling ends
    assert heartbeat.in_hand == 1
    assert heartbeat.adopt(ReceivedMessage("m1", "receipt-3", "body", 3))
    assert second.receipt_handle == "receipt-3"


async def test_a_beat_answering_for_an_old_delivery_leaves_the_new_one_watched() -> None:
    """A beat extends the first delivery; meanwhile it is released and a new delivery is
    held. The beat's answer must not put the old delivery back in the watch."""
    queue = SlowQueue()
    queue.latest = "receipt-1"
    heartbeat = VisibilityHeartbeat(queue, visibility_timeout=10)
    first = ReceivedMessage("m1", "receipt-1", "body", 1)
    heartbeat.hold(first, received_at=0.0)
    beat = asyncio.create_task(heartbeat.beat())
    await asyncio.sleep(0.01)  # the extension is under way
    heartbeat.release(first)
    second = ReceivedMessage("m1", "receipt-2", "body", 2)
    heartbeat.hold(second)
    queue.go.set()
    await beat
    assert heartbeat.adopt(ReceivedMessage("m1", "receipt-3", "body", 3))
    assert second.receipt_handle == "receipt-3"  # the new delivery took the copy


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def settle(heartbeat: VisibilityHeartbeat, message_id: str) -> None:
    message = ReceivedMessage(message_id, "receipt-1", "body", 1)
    heartbeat.hold(message)
    with heartbeat.settling(message):
        pass


async def test_a_message_settled_moments_ago_is_known_for_two_visibility_timeouts() -> None:
    """A copy answered just after the delete comes within a long poll; a copy whose own
    delete failed comes back a visibility timeout after it was received."""
    clock = Clock()
    heartbeat = VisibilityHeartbeat(ScriptedQueue([]), visibility_timeout=10, clock=clock)
    copy = ReceivedMessage("m1", "receipt-2", "body", 2)
    assert not heartbeat.settled_recently(copy)
    settle(heartbeat, "m1")
    assert not heartbeat.adopt(copy)  # no longer in hand
    clock.now += 19
    assert heartbeat.settled_recently(copy)
    assert not heartbeat.settled_recently(ReceivedMessage("m2", "receipt-1", "body", 1))
    heartbeat.note_settled("m1")  # the copy's delete failed: remembered from now
    clock.now += 19
    assert heartbeat.settled_recently(copy)
    clock.now += 2
    assert not heartbeat.settled_recently(copy)


async def test_the_memory_of_settled_messages_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A visibility timeout of hours must not keep hours of message ids: the latest
    SETTLED_MEMORY are kept, and the expired ones are forgotten as others settle."""
    monkeypatch.setattr(heartbeat_module, "SETTLED_MEMORY", 3)
    clock = Clock()
    heartbeat = VisibilityHeartbeat(ScriptedQueue([]), visibility_timeout=43_200, clock=clock)
    for n in range(5):
        settle(heartbeat, f"m{n}")
    known = [heartbeat.settled_recently(ReceivedMessage(f"m{n}", "r", "b", 2)) for n in range(5)]
    assert known == [False, False, True, True, True]


async def test_a_lapsed_message_held_again_is_counted_once_and_not_extended() -> None:
    """A FIFO follower whose receipt a beat found gone is held again when its turn comes
    (the handler holds every message it starts): it stays lapsed, counted once."""
    gone = BatchEntryError("ReceiptHandleIsInvalid", "gone", sender_fault=True)
    queue = ScriptedQueue([gone])
    heartbeat = VisibilityHeartbeat(queue, visibility_timeout=10)
    message = ReceivedMessage("m1", "old", "body", 1)
    heartbeat.hold(message, received_at=0.0)
    await heartbeat.beat()
    heartbeat.hold(message)
    await heartbeat.beat()
    assert (heartbeat.in_hand, queue.calls) == (1, 1)

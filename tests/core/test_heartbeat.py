"""The visibility heartbeat, over a queue whose visibility calls answer as told."""

from __future__ import annotations

from worker.aws.sqs import SourceQueue
from worker.aws.sqs_wire import BatchEntryError, ReceivedMessage
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

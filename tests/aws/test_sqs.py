"""The SQS wire layer: batch answers read entry by entry, queue depth, received messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from worker.aws.sqs_wire import (
    MISSING_ENTRY,
    BatchEntryError,
    QueueDepth,
    ReceivedMessage,
    batch_results,
    chunks,
    entry_outcomes,
    from_epoch_millis,
)


def test_each_entry_gets_its_own_outcome() -> None:
    answer = {
        "Successful": [{"Id": "0"}, {"Id": "2"}],
        "Failed": [{"Id": "1", "Code": "ReceiptHandleIsInvalid", "SenderFault": True}],
    }
    first, second, third = entry_outcomes(3, answer)
    assert first is None
    assert isinstance(second, BatchEntryError)
    assert second.code == "ReceiptHandleIsInvalid"
    assert third is None


def test_an_entry_the_answer_does_not_mention_failed() -> None:
    """Neither in Successful nor in Failed: nothing says it was done, so it was not (a
    delete taken as done would leave the message to come back; SNS is read the same
    way)."""
    outcomes = entry_outcomes(2, {"Successful": [{"Id": "0"}], "Failed": []})
    assert outcomes[0] is None
    assert isinstance(outcomes[1], BatchEntryError)
    assert outcomes[1].code == MISSING_ENTRY


def test_batch_results_keep_new_message_ids_and_failure_details() -> None:
    answer = {
        "Successful": [{"Id": "1", "MessageId": "m-1"}],
        "Failed": [{"Id": "0", "Code": "InternalError", "Message": "try again"}],
    }
    failed, sent, unanswered = batch_results(3, answer)
    assert (sent.ok, sent.message_id) == (True, "m-1")
    assert failed.error is not None
    assert (failed.error.code, failed.error.message, failed.error.sender_fault) == (
        "InternalError",
        "try again",
        False,
    )
    assert failed.error.answered
    assert unanswered.error is not None
    assert not unanswered.error.answered


def test_queue_depth_from_attributes() -> None:
    depth = QueueDepth.from_attributes(
        {
            "ApproximateNumberOfMessages": "3",
            "ApproximateNumberOfMessagesNotVisible": "2",
            "ApproximateNumberOfMessagesDelayed": "1",
        }
    )
    assert depth == (3, 2, 1)
    assert depth.total == sum(depth) == 6
    assert QueueDepth.from_attributes({}).total == 0


def test_received_message_reads_the_system_attributes() -> None:
    answer = {
        "MessageId": "m",
        "ReceiptHandle": "h",
        "Body": "b",
        "Attributes": {
            "ApproximateReceiveCount": "4",
            "MessageGroupId": "g",
            "SentTimestamp": "1700000000000",
            "DeadLetterQueueSourceArn": "arn:aws:sqs:us-east-1:1:q",
        },
        "MessageAttributes": {"a": {"DataType": "String", "StringValue": "v"}},
    }
    message = ReceivedMessage.from_sqs(cast(Any, answer))
    assert (message.receive_count, message.group_id) == (4, "g")
    assert message.sent_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert message.moved_from == "arn:aws:sqs:us-east-1:1:q"
    assert dict(message.attributes) == {"a": {"DataType": "String", "StringValue": "v"}}
    assert "'b'" not in repr(message)


def test_epoch_millis_only_from_plain_digits() -> None:
    assert from_epoch_millis("0") == datetime.fromtimestamp(0, UTC)
    for text in (None, "", "-1", "1e9", "²", "1" * 16):
        assert from_epoch_millis(text) is None


def test_chunks_of_the_batch_size() -> None:
    assert [len(chunk) for chunk in chunks(list(range(23)))] == [10, 10, 3]

"""Receiving from the DLQ without losing or hiding anything for long.

A scan holds what it receives invisible (renewing the hold before it lapses, so nothing
is seen twice) and hands everything back with visibility 0 when it ends, so the DLQ
looks untouched at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.sqs_wire import MAX_BATCH, batch_results, chunks
from worker.ops.dlq.model import DlqMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import MessageSystemAttributeNameType
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

HOLD_SECONDS: Final = 30  # visibility asked for on receive
RENEW_MARGIN_SECONDS: Final = 10  # a hold this close to lapsing is renewed ...
RENEW_SECONDS: Final = 60  # ... for this long
RECEIVE_WAIT_SECONDS: Final = 1  # long poll: an empty answer means nothing is visible
SYSTEM_ATTRIBUTES: Final[list[MessageSystemAttributeNameType]] = [
    "ApproximateReceiveCount",
    "SentTimestamp",
    "MessageGroupId",
    "DeadLetterQueueSourceArn",  # set by SQS on what a redrive policy moved
]


def receive(client: SQSClient, queue_url: str, max_messages: int) -> list[DlqMessage]:
    answer = client.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max(1, min(MAX_BATCH, max_messages)),
        WaitTimeSeconds=RECEIVE_WAIT_SECONDS,
        VisibilityTimeout=HOLD_SECONDS,
        MessageSystemAttributeNames=SYSTEM_ATTRIBUTES,
        MessageAttributeNames=["All"],
    )
    return [DlqMessage.from_sqs(message) for message in answer.get("Messages", [])]


def change_visibility(
    client: SQSClient, queue_url: str, handles: Sequence[tuple[str, str]], seconds: int
) -> set[str]:
    """Set the visibility of (message id, receipt handle) pairs, at most ten a call;
    returns the message ids whose change failed."""
    failed: set[str] = set()
    for chunk in chunks(handles):
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
            {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
            for index, (_, handle) in enumerate(chunk)
        ]
        answer = client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
        results = batch_results(len(chunk), answer)
        pairs = zip(chunk, results, strict=True)
        failed.update(message_id for (message_id, _), result in pairs if not result.ok)
    return failed


class Holdings:
    """The messages a run holds invisible, by message id: renewed before a hold lapses
    (so a long scan never meets them again) and handed back with visibility 0 at the end."""

    def __init__(
        self, client: SQSClient, queue_url: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._url = queue_url
        self._clock = clock
        self._held: dict[str, tuple[str, float]] = {}  # id -> (receipt handle, hold ends)

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, message: DlqMessage) -> None:
        # Visibility counts from the receive; the clock is read after it, so be early.
        self._held[message.message_id] = (
            message.receipt_handle,
            self._clock() + HOLD_SECONDS - RECEIVE_WAIT_SECONDS,
        )

    def forget(self, message_id: str) -> None:
        self._held.pop(message_id, None)

    def renew(self) -> None:
        soon = self._clock() + RENEW_MARGIN_SECONDS
        due = [(mid, handle) for mid, (handle, ends) in self._held.items() if ends <= soon]
        if not due:
            return
        ends = self._clock() + RENEW_SECONDS
        lapsed = change_visibility(self._client, self._url, due, RENEW_SECONDS)
        for message_id, handle in due:
            if message_id in lapsed:  # SQS hands it out again; a later receive re-holds it
                self._held.pop(message_id)
            else:
                self._held[message_id] = (handle, ends)

    def release_all(self) -> int:
        """Hand every held message back at once; returns how many could not be (those
        come back by themselves when their hold lapses). Never raises: it runs in
        ``finally`` blocks, and nothing is lost if it fails."""
        held = [(mid, handle) for mid, (handle, _) in self._held.items()]
        self._held.clear()
        unreleased = 0
        for chunk in chunks(held):
            try:
                unreleased += len(change_visibility(self._client, self._url, chunk, 0))
            except (ClientError, BotoCoreError):
                unreleased += len(chunk)
        return unreleased


class Scanner:
    """Receives each DLQ message once and holds it until ``release``."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self.holdings = Holdings(client, queue_url)
        self._client = client
        self._url = queue_url
        self._seen: set[str] = set()
        self.unreleased = 0

    def next_batch(self, max_messages: int = MAX_BATCH) -> list[DlqMessage] | None:
        """Messages not seen before (maybe none), or None once nothing is visible."""
        self.holdings.renew()
        batch = receive(self._client, self._url, max_messages)
        if not batch:
            return None
        for message in batch:
            self.holdings.hold(message)  # one received again keeps its newest handle
        fresh = [message for message in batch if message.message_id not in self._seen]
        self._seen.update(message.message_id for message in fresh)
        return fresh

    def batches(self) -> Iterator[list[DlqMessage]]:
        while (batch := self.next_batch()) is not None:
            yield batch

    def release(self) -> int:
        self.unreleased += self.holdings.release_all()
        return self.unreleased


@contextmanager
def scanning(client: SQSClient, queue_url: str) -> Iterator[Scanner]:
    scanner = Scanner(client, queue_url)
    try:
        yield scanner
    finally:
        scanner.release()

"""``replay``: send selected DLQ messages back to the source queue, then delete them.

A copy goes to the destination first, and only the messages whose send succeeded are
deleted from the DLQ, entry by entry. An interruption can therefore leave a message
in both queues at worst (a duplicate, which the worker's stable event_id makes
harmless), never in neither.

``Replayer`` runs the loop; each job is its own collaborator: ``Selector`` (which
messages), ``ReplayPacer`` and ``StopFlag`` (how fast, when to stop), ``Sender`` (the copy),
``AuditLog`` (the record), ``DlqDeleter`` (the original). ``on_progress(done, total,
detail)`` tells a caller where the run stands (the command line draws a bar with it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.sqs_wire import MAX_BATCH, batch_results, queue_depth
from worker.core.dead_letter import REPLAY_COUNT
from worker.ops.dlq.audit import AuditLog
from worker.ops.dlq.model import DlqMessage
from worker.ops.dlq.pacing import ReplayPacer, StopFlag
from worker.ops.dlq.report import describe_message
from worker.ops.dlq.scan import Holdings, Scanner
from worker.ops.dlq.selection import ReplayOptions, Selection, Selector
from worker.ops.dlq.summary import ReplaySummary
from worker.ops.dlq.target import DlqError, describe_error

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

MAX_BATCH_BYTES: Final = 256 * 1024  # SendMessageBatch payload limit (the classic one)
FALLBACK_GROUP_ID: Final = "replayed"  # standard DLQ replayed into a FIFO queue

OnProgress = Callable[[int, int, str], None]  # examined, expected (approximate), detail


def replay_entry(
    index: int, message: DlqMessage, fifo: bool
) -> SendMessageBatchRequestEntryTypeDef:
    replay_count = message.replay_count + 1
    attributes = message.sender_attributes()
    attributes[REPLAY_COUNT] = {"DataType": "String", "StringValue": str(replay_count)}
    entry: SendMessageBatchRequestEntryTypeDef = {
        "Id": str(index),
        "MessageBody": message.body,
        "MessageAttributes": attributes,
    }
    if fifo:
        entry["MessageGroupId"] = message.group_id or FALLBACK_GROUP_ID
        # Stable across reruns: a send repeated after an interruption is deduplicated.
        entry["MessageDeduplicationId"] = f"{message.message_id}-replay-{replay_count}"[:128]
    return entry


def batches_by_size(messages: Sequence[DlqMessage]) -> Iterator[list[DlqMessage]]:
    """At most MAX_BATCH messages and MAX_BATCH_BYTES per SendMessageBatch."""
    batch: list[DlqMessage] = []
    size = 0
    for message in messages:
        message_size = message.send_size()
        if batch and (len(batch) == MAX_BATCH or size + message_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += message_size
    if batch:
        yield batch


@dataclass(frozen=True)
class SendResult:
    sent: list[tuple[DlqMessage, str]]  # each with its new message id
    failed: int
    first_error: str | None = None


class Sender:
    """Sends copies of DLQ messages to the destination queue."""

    def __init__(self, client: SQSClient, destination_url: str) -> None:
        self._client = client
        self._destination = destination_url
        self._fifo = destination_url.endswith(".fifo")

    def send(self, batch: Sequence[DlqMessage]) -> SendResult:
        """Raises DlqError if the call itself failed: maybe sent, maybe not."""
        entries = [replay_entry(index, message, self._fifo) for index, message in enumerate(batch)]
        try:
            answer = self._client.send_message_batch(QueueUrl=self._destination, Entries=entries)
        except (ClientError, BotoCoreError) as error:
            raise DlqError(f"SendMessageBatch failed: {describe_error(error)}") from None
        results = batch_results(len(batch), answer)
        sent = [(m, r.message_id) for m, r in zip(batch, results, strict=True) if r.ok]
        errors = [r.error for r in results if r.error is not None and r.error.answered]
        first_error = f"send failed: {errors[0]}" if errors else None
        return SendResult(sent, len(batch) - len(sent), first_error)


class DlqDeleter:
    """Deletes from the DLQ the messages whose copies were sent."""

    def __init__(self, client: SQSClient, dlq_url: str) -> None:
        self._client = client
        self._dlq_url = dlq_url

    def delete(self, messages: Sequence[DlqMessage]) -> list[bool]:
        """Whether each was deleted. Raises DlqError if the call itself failed."""
        try:
            answer = self._client.delete_message_batch(
                QueueUrl=self._dlq_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message.receipt_handle}
                    for index, message in enumerate(messages)
                ],
            )
        except (ClientError, BotoCoreError) as error:
            raise DlqError(f"DeleteMessageBatch failed: {describe_error(error)}") from None
        return [result.ok for result in batch_results(len(messages), answer)]


class Replayer:
    """Moves selected DLQ messages to the destination: send first, delete after."""

    def __init__(
        self,
        client: SQSClient,
        dlq_url: str,
        destination_url: str,
        options: ReplayOptions,
        *,
        audit: AuditLog | None = None,
        on_progress: OnProgress | None = None,
        pacer: ReplayPacer | None = None,
    ) -> None:
        self._client = client
        self._dlq_url = dlq_url
        self._options = options
        self._selector = Selector(options)
        self._sender = Sender(client, destination_url)
        self._deleter = DlqDeleter(client, dlq_url)
        self._audit = audit or AuditLog(None, destination_url)
        self._on_progress = on_progress
        self._expected = 0
        self._pacer = pacer or ReplayPacer(options.rate)
        self.summary = ReplaySummary(destination_url, dry_run=options.dry_run)

    def run(self, stop: StopFlag | None = None) -> ReplaySummary:
        """On KeyboardInterrupt the held messages are still handed back, and
        ``self.summary`` tells what was done before it."""
        stop = stop or StopFlag()
        if self._on_progress is not None:
            self._expected = self._expected_total()
        scanner = Scanner(self._client, self._dlq_url)
        try:
            self._loop(scanner, stop)
        except (ClientError, BotoCoreError, DlqError) as error:
            self.summary.error = describe_error(error)
        finally:
            with stop.shield():
                self.summary.unreleased = scanner.release()
            self.summary.interrupted = self.summary.interrupted or stop.is_set()
        return self.summary

    def _loop(self, scanner: Scanner, stop: StopFlag) -> None:
        while not stop.is_set() and (room := self._room()) > 0:
            # Abandoning a receive midway would leave its messages hidden for the whole
            # hold, so a second Ctrl-C waits for it (a long poll of RECEIVE_WAIT_SECONDS).
            with stop.shield():
                batch = scanner.next_batch(min(room, self._pacer.batch_size()))
            if batch is None or stop.is_set():  # stopping: a batch just received goes back
                return
            self._handle(batch, scanner.holdings, stop)

    def _room(self) -> int:
        limit = self._options.max_messages
        if limit is None:
            return MAX_BATCH
        summary = self.summary
        return limit - summary.moved - summary.failed - summary.left_in_both

    def _handle(self, batch: list[DlqMessage], holdings: Holdings, stop: StopFlag) -> None:
        selection = self._selector.sort(batch)
        self._count_not_moved(selection)
        if self._options.dry_run:
            self.summary.moved += len(selection.move)
            self.summary.would_move.extend(describe_message(m) for m in selection.move)
        else:
            self._move(selection.move, holdings, stop)
        self._show_progress()

    def _count_not_moved(self, selection: Selection) -> None:
        summary = self.summary
        summary.refused += len(selection.refuse)
        summary.refused_messages.extend(describe_message(m) for m in selection.refuse)
        for message in selection.skip:
            summary.skipped[message.reason] += 1
            if self._selector.held_back(message):
                summary.skipped_by_default[message.reason] += 1

    def _move(self, selected: list[DlqMessage], holdings: Holdings, stop: StopFlag) -> None:
        for batch in batches_by_size(selected):
            if not self._pacer.wait(len(batch), stop):
                return  # stopping: this batch was not sent, so it is handed back untouched
            sent = self._send(batch)
            self._record(sent)
            self._delete([message for message, _ in sent], holdings)

    def _send(self, batch: list[DlqMessage]) -> list[tuple[DlqMessage, str]]:
        try:
            result = self._sender.send(batch)
        except DlqError:
            # Maybe sent, maybe not: not deleted either way, so at worst a duplicate.
            self.summary.failed += len(batch)
            raise
        self.summary.failed += result.failed
        if result.first_error is not None:
            self.summary.error = result.first_error
        return result.sent

    def _record(self, sent: list[tuple[DlqMessage, str]]) -> None:
        try:
            for message, new_message_id in sent:
                self._audit.record(message, new_message_id)
            self._audit.flush()
        except OSError as error:
            # Sent but not recorded: keep the DLQ copies (duplicates) and stop.
            self.summary.left_in_both += len(sent)
            raise DlqError(f"--audit-log: cannot write: {error.strerror or error}") from None

    def _delete(self, sent: list[DlqMessage], holdings: Holdings) -> None:
        if not sent:
            return
        try:
            deleted = self._deleter.delete(sent)
        except DlqError:
            self.summary.left_in_both += len(sent)
            raise
        for message, done in zip(sent, deleted, strict=True):
            if done:
                self.summary.moved += 1
                holdings.forget(message.message_id)
            else:
                self.summary.left_in_both += 1

    def _expected_total(self) -> int:
        """What the progress is measured against: the DLQ's visible messages (approximate),
        at most --max."""
        expected = queue_depth(self._client, self._dlq_url).visible
        limit = self._options.max_messages
        return expected if limit is None else min(expected, limit)

    def _show_progress(self) -> None:
        if self._on_progress is not None:
            summary = self.summary
            detail = f"moved {summary.moved}, skipped {sum(summary.skipped.values())}"
            self._on_progress(summary.examined, self._expected, detail)

"""What SQS says on the wire, for the async worker and the sync tools alike.

Pure parts (the batch size, a batch answer's entries, queue depth, a received message)
work on answers from aiobotocore and boto3 both; the few calls here (``queue_arn``,
``queue_depth``, ``drain``) take a sync boto3 client, the tools' and the tests'.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar, cast

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import MessageSystemAttributeNameType, QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import MessageTypeDef as SyncMessageTypeDef
    from types_aiobotocore_sqs.type_defs import MessageAttributeValueTypeDef, MessageTypeDef

T = TypeVar("T")

MAX_BATCH: Final = 10  # entries per batch call, messages per receive
# What the worker asks of each received message: its receive count (the redrive
# decisions), its FIFO group, the X-Ray header and the trace's message attributes.
RECEIVE_SYSTEM_ATTRIBUTES: Final[tuple[MessageSystemAttributeNameType, ...]] = (
    "ApproximateReceiveCount",
    "MessageGroupId",
    "AWSTraceHeader",
)
RECEIVE_MESSAGE_ATTRIBUTES: Final = ("All",)
MISSING_ENTRY: Final = "NoAnswerForEntry"
MAX_EPOCH_MILLIS_DIGITS: Final = 15


# --- batch answers ---------------------------------------------------------------------


class BatchEntryError(Exception):
    """One entry of a batch call failed."""

    def __init__(self, code: str, message: str, sender_fault: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.sender_fault = sender_fault

    @property
    def answered(self) -> bool:
        """False when the answer did not mention the entry at all."""
        return self.code != MISSING_ENTRY


@dataclass(frozen=True)
class EntryResult:
    """One entry's outcome: ``error`` is None if it succeeded; ``message_id`` is the new
    message's id where the call makes one (SendMessageBatch)."""

    error: BatchEntryError | None = None
    message_id: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def batch_results(count: int, answer: Mapping[str, Any]) -> list[EntryResult]:
    """Map an SQS batch answer (entries by numeric Id, ``0..count-1``) to one result per
    entry. An entry in neither ``Successful`` nor ``Failed`` failed: nothing says it was
    done."""
    missing = BatchEntryError(MISSING_ENTRY, "the batch answer does not mention this entry", False)
    results = [EntryResult(missing)] * count
    for entry in answer.get("Successful", []):
        results[int(entry["Id"])] = EntryResult(message_id=entry.get("MessageId", ""))
    for entry in answer.get("Failed", []):
        error = BatchEntryError(
            entry.get("Code", "Unknown"), entry.get("Message", ""), entry.get("SenderFault", False)
        )
        results[int(entry["Id"])] = EntryResult(error)
    return results


def entry_outcomes(count: int, answer: Mapping[str, Any]) -> list[BaseException | None]:
    """One outcome per entry, as the worker's batchers take them: None or the error."""
    return [result.error for result in batch_results(count, answer)]


def chunks(items: Sequence[T], size: int = MAX_BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- queue attributes ------------------------------------------------------------------

DEPTH_ATTRIBUTES: Final[list[QueueAttributeNameType]] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


class QueueDepth(NamedTuple):
    """Approximate counts; ``sum(depth)`` is everything still on the queue."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed

    @classmethod
    def from_attributes(cls, attributes: Mapping[Any, str]) -> QueueDepth:
        """From a GetQueueAttributes answer's ``Attributes`` (for DEPTH_ATTRIBUTES)."""
        return cls(
            visible=int(attributes.get("ApproximateNumberOfMessages", "0")),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", "0")),
        )


def queue_depth(client: SQSClient, queue_url: str) -> QueueDepth:
    answer = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=DEPTH_ATTRIBUTES)
    return QueueDepth.from_attributes(answer.get("Attributes", {}))


def queue_arn(client: SQSClient, queue_url: str) -> str:
    """The queue's ARN as SQS reports it (LocalStack's and moto's URLs do not spell it)."""
    answer = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return answer["Attributes"]["QueueArn"]


# --- received messages -----------------------------------------------------------------


@dataclass(eq=False)
class ReceivedMessage:
    """One delivery of a message. Only ``receipt_handle`` ever changes: a message
    delivered again while in hand takes the new delivery's receipt, because SQS deletes
    and extends a message only with its latest receipt."""

    message_id: str
    receipt_handle: str
    body: str = field(repr=False)  # a token, or most of one: never in a repr
    receive_count: int = 1
    group_id: str | None = None
    attributes: Mapping[str, MessageAttributeValueTypeDef] = field(
        default_factory=lambda: MappingProxyType({})
    )
    sent_at: datetime | None = None  # SentTimestamp, when asked for
    moved_from: str | None = None  # DeadLetterQueueSourceArn: moved by a redrive policy
    trace_header: str | None = None  # AWSTraceHeader: X-Ray context of the sender

    @classmethod
    def from_sqs(cls, message: MessageTypeDef | SyncMessageTypeDef) -> ReceivedMessage:
        system: Mapping[Any, str] = message.get("Attributes", {})
        return cls(
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=message.get("Body", ""),
            receive_count=int(system.get("ApproximateReceiveCount", "1")),
            group_id=system.get("MessageGroupId"),
            attributes=MappingProxyType(
                cast(
                    dict[str, "MessageAttributeValueTypeDef"], message.get("MessageAttributes", {})
                )
            ),
            sent_at=from_epoch_millis(system.get("SentTimestamp")),
            moved_from=system.get("DeadLetterQueueSourceArn"),
            trace_header=system.get("AWSTraceHeader"),
        )


def from_epoch_millis(text: str | None) -> datetime | None:
    """SentTimestamp and the like; None for anything but plain ASCII digits."""
    if text is None or not (text.isascii() and text.isdigit()):
        return None
    if len(text) > MAX_EPOCH_MILLIS_DIGITS:
        return None
    return datetime.fromtimestamp(int(text) / 1000, UTC)


# --- reading a whole queue -------------------------------------------------------------


def drain(
    client: SQSClient,
    queue_url: str,
    expected: int | None = None,
    *,
    empty_polls: int = 2,
    system_attributes: Sequence[MessageSystemAttributeNameType] = ("All",),
) -> list[SyncMessageTypeDef]:
    """Read every message of a queue, deleting each batch as it is read. Ends after
    ``empty_polls`` empty long polls in a row (SNS delivers to a tap queue a moment
    late), or once ``expected`` messages are in. Raises ``BatchEntryError`` if a delete
    fails: that message would be read again later."""
    messages: list[SyncMessageTypeDef] = []
    empty = 0
    while empty < empty_polls and (expected is None or len(messages) < expected):
        batch = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=MAX_BATCH,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=list(system_attributes),
        ).get("Messages", [])
        empty = 0 if batch else empty + 1
        if batch:
            messages.extend(batch)
            _delete_all(client, queue_url, [message["ReceiptHandle"] for message in batch])
    return messages


def _delete_all(client: SQSClient, queue_url: str, handles: Sequence[str]) -> None:
    answer = client.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(handles)
        ],
    )
    for result in batch_results(len(handles), answer):
        if result.error is not None:
            raise result.error

"""The source queue: receive, delete and change visibility, the last two batched."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, cast

from worker.core.batcher import Batcher

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageAttributeValueTypeDef, MessageTypeDef

MAX_BATCH = 10


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    receipt_handle: str
    body: str = field(repr=False)  # a token, or most of one: never in a repr
    receive_count: int = 1
    group_id: str | None = None
    attributes: Mapping[str, MessageAttributeValueTypeDef] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def from_sqs(cls, message: MessageTypeDef) -> ReceivedMessage:
        system = message.get("Attributes", {})
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
        )


@dataclass(frozen=True)
class VisibilityChange:
    receipt_handle: str
    timeout: int


class SourceQueue:
    def __init__(self, client: SQSClient, queue_url: str, *, linger: float = 0.05) -> None:
        self.client = client
        self.url = queue_url
        self._deletes: Batcher[str, None] = Batcher("delete", self._delete_batch, linger=linger)
        self._visibility: Batcher[VisibilityChange, None] = Batcher(
            "visibility", self._visibility_batch, linger=linger
        )

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        answer = await self.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(MAX_BATCH, max_messages)),
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
            MessageAttributeNames=["All"],
        )
        return [ReceivedMessage.from_sqs(message) for message in answer.get("Messages", [])]

    async def delete(self, message: ReceivedMessage) -> None:
        await self._deletes.submit(message.receipt_handle)

    async def change_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        await self._visibility.submit(VisibilityChange(message.receipt_handle, seconds))

    async def approximate_depth(self) -> int:
        """Visible + in flight + delayed: zero means there is nothing left to do."""
        answer = await self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        return sum(int(value) for value in answer.get("Attributes", {}).values())

    async def close(self) -> None:
        await self._deletes.close()
        await self._visibility.close()

    async def _delete_batch(self, handles: Sequence[str]) -> Sequence[BaseException | None]:
        answer = await self.client.delete_message_batch(
            QueueUrl=self.url,
            Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)],
        )
        return entry_outcomes(len(handles), answer)

    async def _visibility_batch(
        self, changes: Sequence[VisibilityChange]
    ) -> Sequence[BaseException | None]:
        answer = await self.client.change_message_visibility_batch(
            QueueUrl=self.url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": c.receipt_handle, "VisibilityTimeout": c.timeout}
                for i, c in enumerate(changes)
            ],
        )
        return entry_outcomes(len(changes), answer)


class BatchEntryError(Exception):
    """One entry of a batch call failed."""

    def __init__(self, code: str, message: str, sender_fault: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.sender_fault = sender_fault


MISSING_ENTRY: Final = "NoAnswerForEntry"


def entry_outcomes(count: int, answer: Mapping[str, Any]) -> list[BaseException | None]:
    """Map an SQS batch answer (entries by numeric Id) to one outcome per entry. An entry
    in neither ``Successful`` nor ``Failed`` failed: nothing says it was done."""
    outcomes: list[BaseException | None] = [
        BatchEntryError(MISSING_ENTRY, "the batch answer does not mention this entry", False)
    ] * count
    for entry in answer.get("Successful", []):
        outcomes[int(entry["Id"])] = None
    for entry in answer.get("Failed", []):
        outcomes[int(entry["Id"])] = BatchEntryError(
            entry.get("Code", "Unknown"), entry.get("Message", ""), entry.get("SenderFault", False)
        )
    return outcomes

"""The source queue: receive, delete and change visibility, the last two batched.

The wire details (batch size, batch answers, the message model) are in ``sqs_wire``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from worker.aws.sqs_wire import (
    DEPTH_ATTRIBUTES,
    MAX_BATCH,
    RECEIVE_MESSAGE_ATTRIBUTES,
    RECEIVE_SYSTEM_ATTRIBUTES,
    QueueDepth,
    ReceivedMessage,
    entry_outcomes,
)
from worker.core.batcher import Batcher

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient


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
            MessageSystemAttributeNames=RECEIVE_SYSTEM_ATTRIBUTES,
            MessageAttributeNames=RECEIVE_MESSAGE_ATTRIBUTES,
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
            AttributeNames=DEPTH_ATTRIBUTES,
        )
        return QueueDepth.from_attributes(answer.get("Attributes", {})).total

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

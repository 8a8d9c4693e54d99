"""Send poison messages to the dead-letter queue with the reason attached.

The body goes unchanged, so a replay re-enqueues exactly what the web tier sent; the
reason, a short error text, the source message id, the receive count and the time go
in message attributes (``schemas/dead-letter.schema.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from worker.batcher import Batcher
from worker.errors import DeadLetterReason
from worker.sqs import ReceivedMessage, entry_outcomes

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

REASON: Final = "dlq_reason"
ERROR: Final = "dlq_error"
SOURCE_MESSAGE_ID: Final = "dlq_source_message_id"
RECEIVE_COUNT: Final = "dlq_receive_count"
FAILED_AT: Final = "dlq_failed_at"
TOKEN_SHA256: Final = "dlq_token_sha256"
REPLAY_COUNT: Final = "replay_count"
OWN_ATTRIBUTES: Final = frozenset(
    {REASON, ERROR, SOURCE_MESSAGE_ID, RECEIVE_COUNT, FAILED_AT, TOKEN_SHA256}
)
MAX_ATTRIBUTES: Final = 10  # SQS's limit per message
MAX_ERROR_LENGTH: Final = 1024


@dataclass(frozen=True)
class DeadLetter:
    message: ReceivedMessage
    reason: DeadLetterReason
    error: str
    token_sha256: str | None = None


def _string(value: str) -> MessageAttributeValueTypeDef:
    return {"DataType": "String", "StringValue": value}


def dead_letter_attributes(letter: DeadLetter) -> dict[str, MessageAttributeValueTypeDef]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    attributes = {
        REASON: _string(letter.reason.value),
        ERROR: _string(letter.error[:MAX_ERROR_LENGTH] or letter.reason.value),
        SOURCE_MESSAGE_ID: _string(letter.message.message_id),
        RECEIVE_COUNT: _string(str(letter.message.receive_count)),
        FAILED_AT: _string(now),
    }
    if letter.token_sha256:
        attributes[TOKEN_SHA256] = _string(letter.token_sha256)
    # Keep the sender's own attributes (replay_count among them) where SQS's limit allows;
    # the previous failure's dlq_* attributes are replaced, not kept.
    for name, value in sorted(letter.message.attributes.items()):
        if len(attributes) >= MAX_ATTRIBUTES:
            break
        if name not in OWN_ATTRIBUTES:
            attributes[name] = value
    return attributes


class DeadLetterQueue:
    def __init__(self, client: SQSClient, dlq_url: str, *, linger: float = 0.05) -> None:
        self._client = client
        self.url = dlq_url
        self._fifo = dlq_url.endswith(".fifo")
        self._batcher: Batcher[DeadLetter, None] = Batcher(
            "dead-letter",
            self._send,
            linger=linger,
            size_of=lambda letter: len(letter.message.body.encode("utf-8")) + 2048,
        )

    async def send(self, letter: DeadLetter) -> None:
        await self._batcher.submit(letter)

    async def close(self) -> None:
        await self._batcher.close()

    def _entry(self, index: int, letter: DeadLetter) -> SendMessageBatchRequestEntryTypeDef:
        entry: SendMessageBatchRequestEntryTypeDef = {
            "Id": str(index),
            "MessageBody": letter.message.body,
            "MessageAttributes": dead_letter_attributes(letter),
        }
        if self._fifo:
            entry["MessageGroupId"] = letter.message.group_id or "dead-letters"
            entry["MessageDeduplicationId"] = letter.message.message_id
        return entry

    async def _send(self, letters: Sequence[DeadLetter]) -> list[BaseException | None]:
        answer = await self._client.send_message_batch(
            QueueUrl=self.url, Entries=[self._entry(i, letter) for i, letter in enumerate(letters)]
        )
        return entry_outcomes(len(letters), answer.get("Failed", []))

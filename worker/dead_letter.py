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
BODY_TRUNCATED: Final = "dlq_body_truncated"
MAX_ATTRIBUTES: Final = 10  # SQS's limit per message
MAX_ERROR_LENGTH: Final = 1024
MAX_MESSAGE_BYTES: Final = 256 * 1024  # body and attributes together


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
        body, attributes = fit_in_message(letter.message.body, dead_letter_attributes(letter))
        entry: SendMessageBatchRequestEntryTypeDef = {
            "Id": str(index),
            "MessageBody": body,
            "MessageAttributes": attributes,
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


def attributes_size(attributes: dict[str, MessageAttributeValueTypeDef]) -> int:
    return sum(
        len(name) + len(value.get("DataType", "")) + len(value.get("StringValue", "").encode())
        for name, value in attributes.items()
    )


def fit_in_message(
    body: str, attributes: dict[str, MessageAttributeValueTypeDef]
) -> tuple[str, dict[str, MessageAttributeValueTypeDef]]:
    """SQS caps body and attributes at 256 KiB together, so a source message near the cap
    cannot carry the reason as well. The reason wins: first the sender's own attributes
    go, then the body is cut, with its original length in ``dlq_body_truncated``. Only a
    body far over any valid request's size (MalformedMessage) can get here."""
    encoded = body.encode("utf-8")
    if len(encoded) + attributes_size(attributes) <= MAX_MESSAGE_BYTES:
        return body, attributes
    ours = {name: value for name, value in attributes.items() if name in OWN_ATTRIBUTES}
    ours[BODY_TRUNCATED] = _string(str(len(encoded)))
    room = MAX_MESSAGE_BYTES - attributes_size(ours) - 64
    return encoded[:room].decode("utf-8", errors="ignore"), ours

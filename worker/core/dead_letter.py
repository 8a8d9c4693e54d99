"""Send poison messages to the dead-letter queue with the reason attached.

The body goes unchanged, so a replay re-enqueues exactly what the web tier sent; the
reason, a short error text, the source message id, the receive count and the time go
in message attributes (``schemas/dead-letter.schema.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from worker.aws.sqs_wire import MAX_BATCH, ReceivedMessage, entry_outcomes
from worker.core.batcher import Batcher
from worker.core.errors import DeadLetterReason

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
# Every dlq_* name is the worker's: a received one is never copied onto a letter.
RESERVED_PREFIX: Final = "dlq_"
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
        reserved = name.startswith(RESERVED_PREFIX)  # ours, from an earlier failure, or forged
        if not reserved and (sendable := sendable_value(value)) is not None:
            attributes[name] = sendable
    return attributes


def sendable_value(value: MessageAttributeValueTypeDef) -> MessageAttributeValueTypeDef | None:
    """A received attribute value as SendMessage accepts it. Receive answers can carry
    empty ``StringListValues``/``BinaryListValues``, which SendMessage refuses (list
    values are reserved); only the data type and the one value are sent on."""
    data_type = value.get("DataType", "")
    if "StringValue" in value:
        return {"DataType": data_type, "StringValue": value["StringValue"]}
    if "BinaryValue" in value:
        return {"DataType": data_type, "BinaryValue": value["BinaryValue"]}
    return None


class DeadLetterQueue:
    def __init__(self, client: SQSClient, dlq_url: str, *, linger: float = 0.05) -> None:
        self._client = client
        self.url = dlq_url
        self._fifo = dlq_url.endswith(".fifo")
        self._batcher: Batcher[OutgoingLetter, None] = Batcher(
            "dead-letter",
            self._send,
            max_size=MAX_BATCH,
            linger=linger,
            size_of=lambda letter: letter.size,
        )

    async def send(self, letter: DeadLetter) -> None:
        await self._batcher.submit(OutgoingLetter.of(letter))

    async def close(self) -> None:
        await self._batcher.close()

    def _entry(self, index: int, letter: OutgoingLetter) -> SendMessageBatchRequestEntryTypeDef:
        entry: SendMessageBatchRequestEntryTypeDef = {
            "Id": str(index),
            "MessageBody": letter.body,
            "MessageAttributes": letter.attributes,
        }
        if self._fifo:
            entry["MessageGroupId"] = letter.group_id or "dead-letters"
            entry["MessageDeduplicationId"] = letter.source_message_id
        return entry

    async def _send(self, letters: Sequence[OutgoingLetter]) -> list[BaseException | None]:
        answer = await self._client.send_message_batch(
            QueueUrl=self.url, Entries=[self._entry(i, letter) for i, letter in enumerate(letters)]
        )
        return entry_outcomes(len(letters), answer)


@dataclass(frozen=True)
class OutgoingLetter:
    """A dead letter as it is sent: built once, for the batch's size check and the call."""

    body: str = field(repr=False)  # can be most of a token
    attributes: dict[str, MessageAttributeValueTypeDef]
    source_message_id: str
    group_id: str | None

    @classmethod
    def of(cls, letter: DeadLetter) -> OutgoingLetter:
        body, attributes = fit_in_message(letter.message.body, dead_letter_attributes(letter))
        return cls(body, attributes, letter.message.message_id, letter.message.group_id)

    @property
    def size(self) -> int:
        return len(self.body.encode("utf-8")) + attributes_size(self.attributes)


def attributes_size(attributes: dict[str, MessageAttributeValueTypeDef]) -> int:
    """Bytes SQS counts toward the message size: each name, data type and value."""
    return sum(
        len(name)
        + len(value.get("DataType", ""))
        + len(value.get("StringValue", "").encode())
        + _binary_size(value)
        for name, value in attributes.items()
    )


def _binary_size(value: MessageAttributeValueTypeDef) -> int:
    binary = value.get("BinaryValue", b"")
    return len(binary) if isinstance(binary, bytes | str) else 0


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

"""A DLQ message as ``regworker dlq`` reads it back, and the reasons it knows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Final, cast

from worker.aws.sqs_wire import ReceivedMessage
from worker.core.dead_letter import (
    ERROR,
    FAILED_AT,
    OWN_ATTRIBUTES,
    REASON,
    RECEIVE_COUNT,
    REPLAY_COUNT,
    SOURCE_MESSAGE_ID,
    TOKEN_SHA256,
)
from worker.core.errors import DeadLetterReason, MalformedMessage
from worker.core.events import token_sha256
from worker.core.request import RegistrationRequest, parse_body, sha256_ref

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueOutputTypeDef,
        MessageAttributeValueTypeDef,
        MessageTypeDef,
    )

UNKNOWN_REASON: Final = "Unknown (redrive policy)"
REASON_CHOICES: Final = (*(reason.value for reason in DeadLetterReason), "Unknown")
# A plain replay leaves these in the DLQ: the token will never resolve (terminal), or
# the body can never parse and stays as evidence of what the web tier sent.
TERMINAL_REASONS: Final = frozenset(
    {DeadLetterReason.INVALID_TOKEN.value, DeadLetterReason.EXPIRED_TOKEN.value}
)
EVIDENCE_REASONS: Final = frozenset({DeadLetterReason.MALFORMED_MESSAGE.value})
SKIPPED_BY_DEFAULT: Final = TERMINAL_REASONS | EVIDENCE_REASONS

ATTRIBUTE_OVERHEAD_BYTES: Final = 64
TOKEN_REF_CHARS: Final = 12
MAX_COUNT_DIGITS: Final = 9  # a count attribute longer than this is not a count

# What `regworker dlq` trusts of a message's attributes.
#
# The dlq_* attributes are the worker's record of why a message failed, but only on a
# letter the worker sent itself. Anyone who can send to the source queue can set
# attributes of the same names, and a message the queue's redrive policy moves to the
# DLQ keeps its attributes and its MessageId: a forged dlq_reason=ExpiredToken would
# make replay skip a good token. So a message counts as the worker's letter only if
#  - it has no DeadLetterQueueSourceArn system attribute. SQS sets it on every message
#    a redrive policy moved (LocalStack does too); a letter is a new message that the
#    worker sent, so it never has one;
#  - it carries the worker's whole set, each a String and well formed: dlq_reason (a
#    reason this version knows), dlq_error, dlq_source_message_id, dlq_receive_count
#    (digits) and dlq_failed_at (a time);
#  - its dlq_source_message_id is not its own MessageId: a letter is a new message,
#    while a move keeps the MessageId.
# Any other message is "Unknown (redrive policy)" whatever dlq_* attributes it has,
# and none of them is read: no error, no receive count, the failure time from
# SentTimestamp, the token hash from the body. Where the endpoint sets no
# DeadLetterQueueSourceArn (moto), a forger who writes the whole set is not caught
# here; the enqueue helpers refuse those names, and the worker refuses received
# messages that carry them. replay_count is the sender's to set whatever is done here,
# so it is advisory: replay still refuses a message at --max-replays, but names it and
# says the count came from the message.
WORKER_LETTER_ATTRIBUTES: Final = frozenset(
    {REASON, ERROR, SOURCE_MESSAGE_ID, RECEIVE_COUNT, FAILED_AT}
)
WORKER_REASONS: Final = frozenset(reason.value for reason in DeadLetterReason)
WORKER_PREFIX: Final = "dlq_"


@dataclass(frozen=True, repr=False)
class DlqMessage:
    message_id: str
    receipt_handle: str
    body: str
    attributes: Mapping[str, MessageAttributeValueOutputTypeDef]
    group_id: str | None = None
    sent_at: datetime | None = None
    moved_from: str | None = None  # DeadLetterQueueSourceArn: moved by a redrive policy

    @classmethod
    def from_sqs(cls, message: MessageTypeDef) -> DlqMessage:
        return cls.from_received(ReceivedMessage.from_sqs(message))

    @classmethod
    def from_received(cls, received: ReceivedMessage) -> DlqMessage:
        """The DLQ's view of a message as the wire layer reads it."""
        return cls(
            message_id=received.message_id,
            receipt_handle=received.receipt_handle,
            body=received.body,
            attributes=cast(
                "Mapping[str, MessageAttributeValueOutputTypeDef]", received.attributes
            ),
            group_id=received.group_id,
            sent_at=received.sent_at,
            moved_from=received.moved_from,
        )

    def __repr__(self) -> str:
        """No body (it holds the token) and no attribute values: ids, reason, references."""
        return (
            f"DlqMessage(message_id={self.message_id!r}, reason={self.reason!r},"
            f" token_ref={self.token_ref!r}, body_length={len(self.body)},"
            f" body_sha256={self.body_ref!r})"
        )

    def text(self, name: str) -> str | None:
        value = self.attributes.get(name)
        return None if value is None else value.get("StringValue")

    @cached_property
    def from_worker(self) -> bool:
        """Whether the dlq_* attributes are the worker's own record (see above)."""
        if self.moved_from is not None:
            return False
        for name in WORKER_LETTER_ATTRIBUTES:
            value = self.attributes.get(name)
            if value is None or value.get("DataType") != "String" or not value.get("StringValue"):
                return False
        return (
            self.text(SOURCE_MESSAGE_ID) != self.message_id
            and self.text(REASON) in WORKER_REASONS
            and to_int(self.text(RECEIVE_COUNT)) is not None
            and parse_time(self.text(FAILED_AT)) is not None
        )

    def _worker_text(self, name: str) -> str | None:
        return self.text(name) if self.from_worker else None

    @property
    def dead_lettered_by(self) -> str:
        return "worker" if self.from_worker else "redrive policy"

    @property
    def ignored_attributes(self) -> int:
        """How many attributes named like the worker's were not trusted (and not read)."""
        if self.from_worker:
            return 0
        return sum(1 for name in self.attributes if name.startswith(WORKER_PREFIX))

    @property
    def reason(self) -> str:
        """The worker's reason, or UNKNOWN_REASON for what the redrive policy moved."""
        return self._worker_text(REASON) or UNKNOWN_REASON

    @property
    def error(self) -> str | None:
        return self._worker_text(ERROR)

    @property
    def receive_count(self) -> int | None:
        return to_int(self._worker_text(RECEIVE_COUNT))

    @property
    def replay_count(self) -> int:
        """Advisory: read from the message, whose sender can set it."""
        return to_int(self.text(REPLAY_COUNT)) or 0

    @property
    def failed_at(self) -> datetime | None:
        return parse_time(self._worker_text(FAILED_AT)) or self.sent_at

    @cached_property
    def request(self) -> RegistrationRequest | MalformedMessage:
        """The parsed body, or why it does not parse."""
        try:
            return parse_body(self.body)
        except MalformedMessage as error:
            return error

    @cached_property
    def token_hash(self) -> str | None:
        """The token's sha256, from the worker's attribute or the parsed body; None if
        the body does not parse (and the worker recorded none)."""
        recorded = self._worker_text(TOKEN_SHA256)
        if recorded:
            return recorded
        request = self.request
        return None if isinstance(request, MalformedMessage) else token_sha256(request.token)

    @property
    def token_ref(self) -> str | None:
        return None if self.token_hash is None else self.token_hash[:TOKEN_REF_CHARS]

    @property
    def body_ref(self) -> str:
        """The whole body's sha256 prefix: tells bodies apart without showing any."""
        return sha256_ref(self.body)

    def sender_attributes(self) -> dict[str, MessageAttributeValueTypeDef]:
        """The web tier's own attributes: no dlq_* ones and no replay_count."""
        return {
            name: _resendable(value)
            for name, value in self.attributes.items()
            if name not in OWN_ATTRIBUTES
            and not name.startswith(WORKER_PREFIX)
            and name != REPLAY_COUNT
        }

    def send_size(self) -> int:
        names = sum(len(name) + ATTRIBUTE_OVERHEAD_BYTES for name in self.attributes)
        values = sum(
            len(value.get("StringValue", "")) + len(value.get("BinaryValue", b""))
            for value in self.attributes.values()
        )
        return len(self.body.encode("utf-8")) + names + values


def _resendable(value: MessageAttributeValueOutputTypeDef) -> MessageAttributeValueTypeDef:
    """Receive answers may carry empty list fields that a send rejects: keep type and value."""
    kept: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
    if "StringValue" in value:
        kept["StringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        kept["BinaryValue"] = value["BinaryValue"]
    return kept


def to_int(text: str | None, max_digits: int = MAX_COUNT_DIGITS) -> int | None:
    """A number written as plain ASCII digits; anything else (a sender's "²", or a
    number too long for int() to take) is none."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > max_digits:
        return None
    return int(text)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def escaped_prefix(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, non-printable ones escaped."""
    pieces: list[str] = []
    used = 0
    for char in text:
        printable = char.isascii() and char.isprintable() and char != "\\"
        piece = char if printable else char.encode("unicode_escape").decode("ascii")
        if used + len(piece) > limit:
            break
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces)

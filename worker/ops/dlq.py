"""Operators' tools for the dead-letter queue: ``regworker dlq stats|peek|replay|redrive``.

Reading never loses or hides a message for long: a scan holds what it receives
invisible (renewing the hold before it lapses, so nothing is seen twice) and hands
everything back with visibility 0 when it ends, so the DLQ looks untouched at once.

``replay`` sends a copy to the source queue first and deletes from the DLQ only the
messages whose send succeeded, entry by entry. An interruption can therefore leave a
message in both queues at worst (a duplicate, which the worker's stable event_id makes
harmless), never in neither. ``redrive`` is the native ``StartMessageMoveTask`` path:
faster, but no filtering, no dry run, no replay count.

Settings: ``--dlq-url``, ``--to`` and ``--region`` fall back to REGWORKER_DLQ_URL,
REGWORKER_QUEUE_URL and AWS_REGION / AWS_DEFAULT_REGION, read once in the command
handler; endpoints and credentials come from the standard AWS variables via boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.sqs_wire import queue_arn
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
from worker.core.faults import describe, error_code
from worker.core.request import RegistrationRequest, parse_body, sha256_ref

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import MessageSystemAttributeNameType
    from mypy_boto3_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        ListMessageMoveTasksResultEntryTypeDef,
        MessageAttributeValueOutputTypeDef,
        MessageAttributeValueTypeDef,
        MessageTypeDef,
        SendMessageBatchRequestEntryTypeDef,
        StartMessageMoveTaskRequestTypeDef,
    )

T = TypeVar("T")

UNKNOWN_REASON: Final = "Unknown (redrive policy)"
REASON_CHOICES: Final = (*(reason.value for reason in DeadLetterReason), "Unknown")
TERMINAL_REASONS: Final = frozenset(
    {DeadLetterReason.INVALID_TOKEN.value, DeadLetterReason.EXPIRED_TOKEN.value}
)
DEFAULT_MAX_REPLAYS: Final = 3

HOLD_SECONDS: Final = 30  # visibility asked for on receive
RENEW_MARGIN_SECONDS: Final = 10  # a hold this close to lapsing is renewed ...
RENEW_SECONDS: Final = 60  # ... for this long
RECEIVE_WAIT_SECONDS: Final = 1  # long poll: an empty answer means nothing is visible
MAX_BATCH: Final = 10
MAX_BATCH_BYTES: Final = 256 * 1024  # SendMessageBatch payload limit (the classic one)
ATTRIBUTE_OVERHEAD_BYTES: Final = 64
SYSTEM_ATTRIBUTES: Final[list[MessageSystemAttributeNameType]] = [
    "ApproximateReceiveCount",
    "SentTimestamp",
    "MessageGroupId",
    "DeadLetterQueueSourceArn",  # set by SQS on what a redrive policy moved
]
FALLBACK_GROUP_ID: Final = "replayed"  # standard DLQ replayed into a FIFO queue
LOCALSTACK_REGION: Final = "us-east-1"
CLIENT_CONFIG: Final = Config(retries={"mode": "standard", "max_attempts": 3})

TOKEN_REF_CHARS: Final = 12
ERROR_DISPLAY_CHARS: Final = 200
MAX_COUNT_DIGITS: Final = 9  # a count attribute longer than this is not a count
PROGRESS_THRESHOLD: Final = 50
PROGRESS_WIDTH: Final = 30

MOVE_TASK_ACTIVE: Final = frozenset({"RUNNING", "CANCELLING"})
MOVE_TASK_UNLISTED_POLLS: Final = 5
UNSUPPORTED_CODES: Final = frozenset(
    {
        "InvalidAction",
        "UnknownOperationException",
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "NotImplemented",
    }
)
UNSUPPORTED_MESSAGE: Final = (
    "this endpoint does not support StartMessageMoveTask (moto); use `regworker dlq replay`"
)

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class UsageError(Exception):
    """A missing or bad option or setting: exit 2."""


class DlqError(Exception):
    """The tool could not finish its job: exit 1."""


class MoveTaskUnsupported(DlqError):
    """The endpoint has no StartMessageMoveTask (moto)."""


# --- settings, read once at the edge --------------------------------------------------


Destination = Literal["none", "optional", "required"]


@dataclass(frozen=True)
class Target:
    dlq_url: str
    region: str
    localstack: bool = False
    destination_url: str = ""


def target_from(
    args: argparse.Namespace, environ: Mapping[str, str], *, destination: Destination = "none"
) -> Target:
    dlq_url = _queue_url(args.dlq_url, environ, "--dlq-url", "REGWORKER_DLQ_URL")
    region = args.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if not region:
        if not args.localstack:
            raise UsageError("missing --region: pass --region or set AWS_REGION")
        region = LOCALSTACK_REGION
    if destination == "none":
        return Target(dlq_url, region, args.localstack)
    if destination == "required":
        destination_url = _queue_url(args.to, environ, "--to", "REGWORKER_QUEUE_URL")
    else:  # a queue URL or ARN, or nothing at all
        destination_url = args.to or environ.get("REGWORKER_QUEUE_URL", "")
    if destination_url == dlq_url:
        raise UsageError("--to: the destination must differ from the DLQ")
    return Target(dlq_url, region, args.localstack, destination_url)


def _queue_url(value: str | None, environ: Mapping[str, str], option: str, variable: str) -> str:
    url = value or environ.get(variable, "")
    if not url:
        raise UsageError(f"missing {option}: pass {option} or set {variable}")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{option} / {variable}: not an SQS queue URL (http:// or https://)")
    return url


def sqs_client(target: Target) -> SQSClient:
    if not target.localstack:
        return boto3.Session(region_name=target.region).client("sqs", config=CLIENT_CONFIG)
    try:
        from localstack_client.session import Session as LocalStackSession
    except ImportError:
        raise UsageError(
            "--localstack needs the localstack-client package: pip install 'regworker[local]'"
        ) from None
    client: SQSClient = LocalStackSession(region_name=target.region).client(
        "sqs", config=CLIENT_CONFIG
    )
    return client


# --- one DLQ message ------------------------------------------------------------------

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
        system = message.get("Attributes", {})
        return cls(
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=message.get("Body", ""),
            attributes=message.get("MessageAttributes", {}),
            group_id=system.get("MessageGroupId"),
            sent_at=_from_epoch_millis(system.get("SentTimestamp")),
            moved_from=system.get("DeadLetterQueueSourceArn"),
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
            and _to_int(self.text(RECEIVE_COUNT)) is not None
            and _parse_time(self.text(FAILED_AT)) is not None
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
        return _to_int(self._worker_text(RECEIVE_COUNT))

    @property
    def replay_count(self) -> int:
        """Advisory: read from the message, whose sender can set it."""
        return _to_int(self.text(REPLAY_COUNT)) or 0

    @property
    def failed_at(self) -> datetime | None:
        return _parse_time(self._worker_text(FAILED_AT)) or self.sent_at

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


def _to_int(text: str | None, max_digits: int = MAX_COUNT_DIGITS) -> int | None:
    """A number written as plain ASCII digits; anything else (a sender's "²", or a
    number too long for int() to take) is none."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > max_digits:
        return None
    return int(text)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _from_epoch_millis(text: str | None) -> datetime | None:
    millis = _to_int(text, max_digits=15)
    return None if millis is None else datetime.fromtimestamp(millis / 1000, UTC)


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


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- holding and scanning ------------------------------------------------------------


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
    for chunk in _chunks(handles, MAX_BATCH):
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
            {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
            for index, (_, handle) in enumerate(chunk)
        ]
        answer = client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
        failed.update(chunk[int(entry["Id"])][0] for entry in answer.get("Failed", []))
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
        for chunk in _chunks(held, MAX_BATCH):
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


# --- stats ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


def queue_depth(client: SQSClient, queue_url: str) -> QueueDepth:
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    ).get("Attributes", {})
    return QueueDepth(
        visible=int(attributes.get("ApproximateNumberOfMessages", "0")),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
        delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", "0")),
    )


@dataclass
class TimeSpan:
    count: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None

    def add(self, moment: datetime | None) -> None:
        self.count += 1
        if moment is None:
            return
        self.oldest = moment if self.oldest is None else min(self.oldest, moment)
        self.newest = moment if self.newest is None else max(self.newest, moment)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "oldest": iso(self.oldest), "newest": iso(self.newest)}


@dataclass
class StatsReport:
    queue_url: str
    depth: QueueDepth
    by_reason: dict[str, TimeSpan] = field(default_factory=dict)
    overall: TimeSpan = field(default_factory=TimeSpan)
    unreleased: int = 0

    def add(self, message: DlqMessage) -> None:
        self.by_reason.setdefault(message.reason, TimeSpan()).add(message.failed_at)
        self.overall.add(message.failed_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "queue_url": self.queue_url,
            "approximate": {
                "visible": self.depth.visible,
                "in_flight": self.depth.in_flight,
                "delayed": self.depth.delayed,
            },
            "scanned": self.overall.count,
            "by_reason": {reason: span.to_json() for reason, span in self._ranked()},
            "oldest": iso(self.overall.oldest),
            "newest": iso(self.overall.newest),
            "not_released": self.unreleased,
        }

    def render(self) -> str:
        depth = self.depth
        lines = [
            f"DLQ          {self.queue_url}",
            f"approximate  {depth.total} ({depth.visible} visible, {depth.in_flight} in flight,"
            f" {depth.delayed} delayed)",
            f"scanned      {self.overall.count}",
        ]
        if self.overall.count < depth.visible:
            lines.append(
                "             (fewer than visible: messages arrived meanwhile, or a FIFO"
                " group's later messages stay hidden while its first ones are held)"
            )
        if not self.overall.count:
            return "\n".join([*lines, "", "The DLQ is empty."])
        rows = [
            [reason, str(span.count), _day(span.oldest), _day(span.newest)]
            for reason, span in self._ranked()
        ]
        rows.append(
            ["all", str(self.overall.count), _day(self.overall.oldest), _day(self.overall.newest)]
        )
        table = _table(["REASON", "COUNT", "OLDEST FAILURE", "NEWEST FAILURE"], rows, right={1})
        return "\n".join([*lines, "", table, *_unreleased_note(self.unreleased)])

    def _ranked(self) -> list[tuple[str, TimeSpan]]:
        return sorted(self.by_reason.items(), key=lambda item: (-item[1].count, item[0]))


def collect_stats(client: SQSClient, queue_url: str) -> StatsReport:
    report = StatsReport(queue_url, queue_depth(client, queue_url))
    with scanning(client, queue_url) as scanner:
        for batch in scanner.batches():
            for message in batch:
                report.add(message)
    report.unreleased = scanner.unreleased
    return report


def _day(moment: datetime | None) -> str:
    text = iso(moment)
    return "-" if text is None else text.replace("T", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join(line(row) for row in [headers, *rows])


def _unreleased_note(count: int) -> list[str]:
    if not count:
        return []
    return [f"note: {count} message(s) could not be handed back; they reappear within a minute"]


# --- peek -----------------------------------------------------------------------------


def peek(
    client: SQSClient, queue_url: str, max_messages: int, reasons: frozenset[str] = frozenset()
) -> list[DlqMessage]:
    """Up to ``max_messages`` messages (of ``reasons``, if given), all left in the DLQ."""
    found: list[DlqMessage] = []
    with scanning(client, queue_url) as scanner:
        for batch in scanner.batches():
            found.extend(message for message in batch if not reasons or message.reason in reasons)
            if len(found) >= max_messages:
                break
    return found[:max_messages]


# What peek (and a dry run's listing) shows of a body: nothing a token could be part
# of. A body that parses shows its token as the 12-hex sha256 prefix; --json adds the
# envelope fields that are not the token, which the parser keeps short and printable:
# format, offer type, correlation id, received_at. A body that does not parse shows its
# length, the sha256 prefix of the whole body (to tell two apart, or to match one the
# web tier logged) and the parser's reason, which quotes no text of the body. No
# prefix or other slice of it, however short: a mangled body is most often a token
# with something around it, so any slice of it can be a piece of a token.


def describe_message(message: DlqMessage) -> dict[str, Any]:
    """What an operator may see of a message: never the token, no text of a bad body."""
    described: dict[str, Any] = {
        "message_id": message.message_id,
        "reason": message.reason,
        "dead_lettered_by": message.dead_lettered_by,
        "error": message.error,
        "receive_count": message.receive_count,
        "replay_count": message.replay_count,
        "failed_at": iso(message.failed_at),
        "token_ref": message.token_ref,
        "body_length": len(message.body),
        "body_sha256": message.body_ref,
    }
    request = message.request
    if isinstance(request, MalformedMessage):
        described["body_error"] = request.detail
    else:
        described["body"] = _body_fields(request)
    if message.moved_from is not None:
        described["moved_from"] = message.moved_from
    if message.ignored_attributes:
        described["ignored_attributes"] = message.ignored_attributes
    if message.group_id is not None:
        described["group_id"] = message.group_id
    return described


def _body_fields(request: RegistrationRequest) -> dict[str, str | None]:
    return {
        "format": request.body_format,
        "offer_type": request.offer_type,
        "correlation_id": request.correlation_id,
        "received_at": None if request.received_at is None else request.received_at.isoformat(),
    }


def render_message(message: DlqMessage) -> str:
    receives = "?" if message.receive_count is None else str(message.receive_count)
    request = message.request
    if message.token_ref is not None:
        body = f"token {message.token_ref}"
    else:
        body = f"malformed body of {len(message.body)} chars (sha256 {message.body_ref})"
    lines = [
        f"{message.message_id}  {message.reason}",
        f"  failed {_day(message.failed_at)}, receives {receives},"
        f" replays {message.replay_count}, {body}",
    ]
    if not message.from_worker:
        origin = f" from {message.moved_from}" if message.moved_from else ""
        ignored = message.ignored_attributes
        note = f"; {ignored} dlq_* attribute(s) ignored, not the worker's" if ignored else ""
        lines.append(f"  moved by a redrive policy{origin}, not dead-lettered by the worker{note}")
    if message.error:
        error = escaped_prefix(message.error, ERROR_DISPLAY_CHARS)
        lines.append(f"  error: {error}{'...' if len(error) < len(message.error) else ''}")
    elif isinstance(request, MalformedMessage):
        lines.append(f"  does not parse: {request.detail}")
    return "\n".join(lines)


# --- replay ---------------------------------------------------------------------------


class Decision(StrEnum):
    MOVE = "move"
    SKIP = "skip"
    REFUSE = "refuse"


@dataclass(frozen=True)
class ReplayOptions:
    reasons: frozenset[str] = frozenset()  # empty: every reason
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    max_messages: int | None = None
    dry_run: bool = False
    rate: float | None = None  # messages per second
    include_terminal: bool = False
    max_replays: int = DEFAULT_MAX_REPLAYS


def decide(message: DlqMessage, options: ReplayOptions, now: datetime) -> Decision:
    reason = message.reason
    if options.reasons and reason not in options.reasons:
        return Decision.SKIP
    if reason in TERMINAL_REASONS and not (options.include_terminal or reason in options.reasons):
        return Decision.SKIP
    if not _within_age(message.failed_at, options, now):
        return Decision.SKIP
    if message.replay_count >= options.max_replays:
        return Decision.REFUSE
    return Decision.MOVE


def _within_age(moment: datetime | None, options: ReplayOptions, now: datetime) -> bool:
    if options.older_than is None and options.newer_than is None:
        return True
    if moment is None:
        return False
    age = now - moment
    if options.older_than is not None and age < options.older_than:
        return False
    return options.newer_than is None or age <= options.newer_than


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
    """At most ten messages and MAX_BATCH_BYTES per SendMessageBatch."""
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


@dataclass
class ReplaySummary:
    destination_url: str
    dry_run: bool = False
    moved: int = 0  # in dry-run: would move
    skipped: Counter[str] = field(default_factory=Counter)  # by DLQ reason
    refused: int = 0
    failed: int = 0  # send failed: still (only) in the DLQ
    left_in_both: int = 0  # sent, but the DLQ delete failed
    unreleased: int = 0
    interrupted: bool = False
    error: str | None = None
    would_move: list[dict[str, Any]] = field(default_factory=list)
    refused_messages: list[dict[str, Any]] = field(default_factory=list)
    terminal_hint: bool = False

    @property
    def examined(self) -> int:
        skipped = sum(self.skipped.values())
        return self.moved + skipped + self.refused + self.failed + self.left_in_both

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.error or self.failed or self.left_in_both:
            return EXIT_FAILURE
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "destination": self.destination_url,
            "dry_run": self.dry_run,
            "moved": self.moved,
            "skipped": dict(sorted(self.skipped.items())),
            "refused": self.refused,
            "failed": self.failed,
            "left_in_both": self.left_in_both,
            "not_released": self.unreleased,
            "interrupted": self.interrupted,
            "error": self.error,
            # replay_count is read from each message, and its sender can set it
            "refused_messages": self.refused_messages,
        }
        if self.dry_run:
            document["would_move"] = self.would_move
        return document

    def render(self, max_replays: int) -> str:
        verb = "would move" if self.dry_run else "moved"
        skipped = ", ".join(f"{reason} {count}" for reason, count in self.skipped.most_common())
        lines = [
            f"{'dry run, nothing changed: ' if self.dry_run else ''}"
            f"{self.examined} examined -> {self.destination_url}",
            f"  {verb:<10}  {self.moved}",
            f"  {'skipped':<10}  {sum(self.skipped.values())}{'  ' + skipped if skipped else ''}",
            f"  {'refused':<10}  {self.refused}"
            + (f"  replay_count reached --max-replays {max_replays}" if self.refused else ""),
            f"  {'failed':<10}  {self.failed}" + ("  left in the DLQ" if self.failed else ""),
        ]
        if self.refused:
            lines.append(
                "  (replay_count is read from the message, and whoever sent it can set it:"
                " check the refused ones with `regworker dlq peek`, and replay them with a"
                " higher --max-replays if their tokens are good)"
            )
        if self.terminal_hint:
            lines.append(
                "  (terminal reasons are skipped: name them with --reason or add"
                " --include-terminal)"
            )
        if self.left_in_both:
            lines.append(
                f"  {self.left_in_both} sent but not deleted from the DLQ: they are in both"
                " queues (harmless duplicates; a rerun would replay them again)"
            )
        lines.extend(_unreleased_note(self.unreleased))
        if self.interrupted:
            lines.append("interrupted: stopped early; every message is in the DLQ or the queue")
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)


class StopFlag:
    """Counts stop requests (Ctrl-C); checked between batches."""

    def __init__(self) -> None:
        self.requests = 0
        self.shielded = False  # handing messages back: a second Ctrl-C waits for it

    def set(self) -> None:
        self.requests += 1

    def is_set(self) -> bool:
        return self.requests > 0

    @contextmanager
    def shield(self) -> Iterator[None]:
        self.shielded = True
        try:
            yield
        finally:
            self.shielded = False


@contextmanager
def sigint_stops(stop: StopFlag) -> Iterator[None]:
    """The first Ctrl-C asks the run to stop once the current batch is done; a second
    one abandons that batch (KeyboardInterrupt), but not the handing back of what is
    held; a third abandons even that. Lossless throughout: nothing unsent is deleted,
    and a message not handed back reappears when its hold lapses."""

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if stop.requests >= 3 or (stop.requests == 2 and not stop.shielded):
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Pacer:
    """Spaces sends so that at most ``rate`` messages go per second."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    def batch_size(self) -> int:
        return MAX_BATCH if self._rate is None else max(1, min(MAX_BATCH, int(self._rate)))

    def wait(self, count: int, stop: StopFlag) -> bool:
        """Wait for room to send ``count`` messages; False if asked to stop meanwhile."""
        if self._rate is None:
            return not stop.is_set()
        start = max(self._clock(), self._next)
        while (left := start - self._clock()) > 0:
            if stop.is_set():
                return False
            self._sleep(min(0.05, left))
        self._next = start + count / self._rate
        return not stop.is_set()


class Progress:
    """A one-line bar on stderr, drawn only for long runs on a terminal."""

    def __init__(self, stream: TextIO, total: int, clock: Callable[[], float] = time.monotonic):
        self._stream = stream
        self._total = max(total, 1)
        self._enabled = total > PROGRESS_THRESHOLD and stream.isatty()
        self._clock = clock
        self._drawn_at = float("-inf")
        self._drawn = False

    def update(self, done: int, detail: str) -> None:
        if not self._enabled or self._clock() - self._drawn_at < 0.1:
            return
        filled = min(PROGRESS_WIDTH, PROGRESS_WIDTH * done // self._total)
        bar = "#" * filled + "-" * (PROGRESS_WIDTH - filled)
        self._stream.write(f"\r[{bar}] {done}/~{self._total} {detail}\x1b[K")
        self._stream.flush()
        self._drawn_at = self._clock()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


class AuditLog:
    """One JSON line per message sent: ids, reason, replay count, token hash; never the token."""

    def __init__(self, stream: TextIO | None, destination_url: str) -> None:
        self._stream = stream
        self._destination = destination_url

    def record(self, message: DlqMessage, new_message_id: str) -> None:
        if self._stream is None:
            return
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "dlq_message_id": message.message_id,
            "new_message_id": new_message_id,
            "reason": message.reason,
            "replay_count": message.replay_count + 1,
            "token_sha256": message.token_hash,
            "destination": self._destination,
        }
        self._stream.write(json.dumps(line, sort_keys=True) + "\n")

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()


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
        progress: Progress | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._client = client
        self._dlq_url = dlq_url
        self._destination = destination_url
        self._fifo = destination_url.endswith(".fifo")
        self._options = options
        self._audit = audit or AuditLog(None, destination_url)
        self._progress = progress
        self._pacer = pacer or Pacer(options.rate)
        self.summary = ReplaySummary(destination_url, dry_run=options.dry_run)

    def run(self, stop: StopFlag | None = None) -> ReplaySummary:
        """On KeyboardInterrupt the held messages are still handed back, and
        ``self.summary`` tells what was done before it."""
        stop = stop or StopFlag()
        scanner = Scanner(self._client, self._dlq_url)
        try:
            self._loop(scanner, stop)
        except (ClientError, BotoCoreError, DlqError) as error:
            self.summary.error = _describe_error(error)
        finally:
            with stop.shield():
                self.summary.unreleased = scanner.release()
            self.summary.interrupted = self.summary.interrupted or stop.is_set()
            if self._progress is not None:
                self._progress.close()
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
        now = datetime.now(UTC)
        selected: list[DlqMessage] = []
        for message in batch:
            decision = decide(message, self._options, now)
            if decision is Decision.MOVE:
                selected.append(message)
            elif decision is Decision.REFUSE:
                self.summary.refused += 1
                self.summary.refused_messages.append(describe_message(message))
            else:
                self._skip(message)
        if self._options.dry_run:
            self._plan(selected)
        else:
            self._move(selected, holdings, stop)
        self._show_progress()

    def _skip(self, message: DlqMessage) -> None:
        self.summary.skipped[message.reason] += 1
        if message.reason in TERMINAL_REASONS and not self._options.include_terminal:
            self.summary.terminal_hint = True

    def _plan(self, selected: list[DlqMessage]) -> None:
        self.summary.moved += len(selected)
        self.summary.would_move.extend(describe_message(message) for message in selected)

    def _move(self, selected: list[DlqMessage], holdings: Holdings, stop: StopFlag) -> None:
        for batch in batches_by_size(selected):
            if not self._pacer.wait(len(batch), stop):
                return  # stopping: this batch was not sent, so it is handed back untouched
            sent = self._send(batch)
            self._record(sent)
            self._delete([message for message, _ in sent], holdings)

    def _send(self, batch: list[DlqMessage]) -> list[tuple[DlqMessage, str]]:
        """Send a batch; returns the messages sent, each with its new message id."""
        entries = [replay_entry(index, message, self._fifo) for index, message in enumerate(batch)]
        try:
            answer = self._client.send_message_batch(QueueUrl=self._destination, Entries=entries)
        except (ClientError, BotoCoreError) as error:
            # Maybe sent, maybe not: not deleted either way, so at worst a duplicate.
            self.summary.failed += len(batch)
            raise DlqError(f"SendMessageBatch failed: {_describe_error(error)}") from None
        successful = answer.get("Successful", [])
        sent = [(batch[int(entry["Id"])], entry["MessageId"]) for entry in successful]
        failures = answer.get("Failed", [])
        self.summary.failed += len(batch) - len(sent)
        if failures:
            first = failures[0]
            self.summary.error = f"send failed: {first['Code']}: {first.get('Message', '')}"
        return sent

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
            answer = self._client.delete_message_batch(
                QueueUrl=self._dlq_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message.receipt_handle}
                    for index, message in enumerate(sent)
                ],
            )
        except (ClientError, BotoCoreError) as error:
            self.summary.left_in_both += len(sent)
            raise DlqError(f"DeleteMessageBatch failed: {_describe_error(error)}") from None
        failed = {int(entry["Id"]) for entry in answer.get("Failed", [])}
        for index, message in enumerate(sent):
            if index in failed:
                self.summary.left_in_both += 1
            else:
                self.summary.moved += 1
                holdings.forget(message.message_id)

    def _show_progress(self) -> None:
        if self._progress is not None:
            summary = self.summary
            detail = f"moved {summary.moved}, skipped {sum(summary.skipped.values())}"
            self._progress.update(summary.examined, detail)


# --- redrive (native StartMessageMoveTask) ---------------------------------------------


@dataclass(frozen=True)
class MoveTask:
    handle: str
    source_arn: str


def start_redrive(
    client: SQSClient, dlq_url: str, *, destination: str | None = None, rate: int | None = None
) -> MoveTask:
    """Start a native move task from the DLQ. ``destination`` is a queue ARN or URL;
    without one, messages go back to the queues they came from."""
    source_arn = queue_arn(client, dlq_url)
    request: StartMessageMoveTaskRequestTypeDef = {"SourceArn": source_arn}
    if destination:
        request["DestinationArn"] = _as_arn(client, destination)
    if rate is not None:
        request["MaxNumberOfMessagesPerSecond"] = rate
    try:
        answer = client.start_message_move_task(**request)
    except ClientError as error:
        if _unsupported(error):
            raise MoveTaskUnsupported(UNSUPPORTED_MESSAGE) from None
        raise
    return MoveTask(answer["TaskHandle"], source_arn)


def move_task_status(
    client: SQSClient, task: MoveTask
) -> ListMessageMoveTasksResultEntryTypeDef | None:
    """This task's entry, or None while it is not listed yet. Only running tasks carry
    their handle; once finished, the newest entry is ours (one task per queue at a time)."""
    results = client.list_message_move_tasks(SourceArn=task.source_arn, MaxResults=10).get(
        "Results", []
    )
    for entry in results:
        if entry.get("TaskHandle") == task.handle:
            return entry
    return results[0] if results else None


def wait_for_redrive(
    client: SQSClient,
    task: MoveTask,
    *,
    poll_seconds: float = 2.0,
    on_status: Callable[[ListMessageMoveTasksResultEntryTypeDef], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ListMessageMoveTasksResultEntryTypeDef:
    """Poll ListMessageMoveTasks until the task is no longer running."""
    unlisted = 0
    while True:
        status = move_task_status(client, task)
        if status is None:
            unlisted += 1
            if unlisted > MOVE_TASK_UNLISTED_POLLS:
                raise DlqError(f"the move task does not show up for {task.source_arn}")
        else:
            if on_status is not None:
                on_status(status)
            if status.get("Status") not in MOVE_TASK_ACTIVE:
                return status
        sleep(poll_seconds)


def redrive(
    client: SQSClient,
    dlq_url: str,
    *,
    destination: str | None = None,
    rate: int | None = None,
    poll_seconds: float = 2.0,
) -> ListMessageMoveTasksResultEntryTypeDef:
    """Start a native move task and wait for it: its final ListMessageMoveTasks entry."""
    task = start_redrive(client, dlq_url, destination=destination, rate=rate)
    return wait_for_redrive(client, task, poll_seconds=poll_seconds)


def _as_arn(client: SQSClient, queue: str) -> str:
    return queue if queue.startswith("arn:") else queue_arn(client, queue)


def _unsupported(error: ClientError) -> bool:
    code = error_code(error)
    # A bare HTTP status as the code means the server answered no AWS error at all
    # (moto's HTML "500 Internal Server Error" for operations it does not implement).
    return code in UNSUPPORTED_CODES or code.isdigit()


def describe_move_task(task: ListMessageMoveTasksResultEntryTypeDef) -> str:
    moved = task.get("ApproximateNumberOfMessagesMoved", 0)
    to_move = task.get("ApproximateNumberOfMessagesToMove")
    progress = f"{moved} moved" if to_move is None else f"{moved} of {to_move} moved"
    failure = task.get("FailureReason")
    return f"{task.get('Status', 'UNKNOWN')}: {progress}" + (f" ({failure})" if failure else "")


# --- command line ---------------------------------------------------------------------

_DESCRIPTION = """\
Inspect and replay the dead-letter queue. Every tool hands the messages it looked at
back at once (visibility 0); only `replay` and `redrive` move anything.
Reasons: the worker's dlq_reason attribute, or "Unknown (redrive policy)" for messages
the queue's own redrive policy moved after a crash (select those with --reason Unknown).
dlq_* attributes are read only from the worker's own letters (sent by the worker, with
its whole set of attributes, never moved by a redrive policy): a sender's are ignored."""

_SETTINGS_NOTE = """\
Queues: --dlq-url (else REGWORKER_DLQ_URL), --to (else REGWORKER_QUEUE_URL).
Region: --region (else AWS_REGION, else AWS_DEFAULT_REGION). Endpoints and credentials:
the standard AWS variables (AWS_ENDPOINT_URL_SQS, AWS_PROFILE, ...), or --localstack.
Exit codes: 0 ok, 1 failure, 2 bad usage or settings, 130 interrupted."""

_DLQ_EPILOG = f"""\
examples:
  regworker dlq stats
  regworker dlq peek --reason RetriesExhausted --max 5
  regworker dlq replay --reason RetriesExhausted --older-than 1h --dry-run
  regworker dlq replay --rate 20 --audit-log replay.jsonl
  regworker dlq redrive --wait

{_SETTINGS_NOTE}"""

_NO_SOURCE_HINT = (
    "regworker dlq redrive: without --to, only messages the redrive policy moved know their"
    " source queue; the ones the worker dead-lettered need --to (or REGWORKER_QUEUE_URL)"
)

_STATS_EPILOG = f"""\
examples:
  regworker dlq stats
  regworker dlq stats --json | jq .by_reason
  regworker dlq stats --localstack --dlq-url http://localhost:4566/000000000000/regs-dlq

Counts every message: each is held invisible for a moment, then handed back at once.

{_SETTINGS_NOTE}"""

_PEEK_EPILOG = f"""\
examples:
  regworker dlq peek
  regworker dlq peek --reason MalformedMessage --max 3
  regworker dlq peek --json | jq '.messages[].error'

Tokens show only as a 12-hex sha256 prefix. A body shows no text at all: one that
parses, its non-secret fields in --json (format, offer type, correlation id,
received_at); one that does not, its length, its sha256 prefix and why it does not
parse. Reasons and
errors are read only from the worker's own letters: a message the redrive policy moved
shows as Unknown, whatever dlq_* attributes its sender gave it. Nothing is consumed.

{_SETTINGS_NOTE}"""

_REPLAY_EPILOG = f"""\
examples:
  regworker dlq replay --dry-run
  regworker dlq replay --reason RetriesExhausted --reason Unknown --max 100
  regworker dlq replay --older-than 2h --rate 20 --audit-log replay.jsonl
  regworker dlq replay --reason InvalidToken        # terminal reasons only when named
  regworker dlq replay --to https://sqs.us-east-1.amazonaws.com/123456789012/regs-staging

Each message is sent with its original body and the sender's attributes (dlq_* ones
dropped, replay_count + 1), and deleted from the DLQ only once its send succeeded.
InvalidToken and ExpiredToken are skipped unless named with --reason or
--include-terminal (a reason counts only on the worker's own letters: what the
redrive policy moved is Unknown, whatever dlq_reason it carries). A message whose
replay_count has reached --max-replays is refused and listed; that count is read from
the message, so its sender can set it. FIFO:
the group id is kept and the deduplication id is the DLQ message id + replay count.
Ctrl-C stops after the current batch; a second Ctrl-C abandons that batch (what is
held is still handed back at once). Either way a message can end up in both queues,
never in neither.

{_SETTINGS_NOTE}"""

_REDRIVE_EPILOG = f"""\
examples:
  regworker dlq redrive --wait
  regworker dlq redrive --to arn:aws:sqs:us-east-1:123456789012:regs --rate 50 --wait

SQS's native move task: fast, but no filtering, no dry run and no replay_count (use
`regworker dlq replay` for those). --to defaults to REGWORKER_QUEUE_URL; with neither,
messages go back to the queues they came from, which only works for those the redrive
policy moved (the ones the worker dead-letters itself have no source on record).
moto lacks StartMessageMoveTask; LocalStack and AWS have it.

{_SETTINGS_NOTE}"""


def parse_reason(text: str) -> str:
    wanted = text.strip().lower()
    if wanted in {"unknown", UNKNOWN_REASON.lower()}:
        return UNKNOWN_REASON
    for reason in DeadLetterReason:
        if reason.value.lower() == wanted:
            return reason.value
    raise argparse.ArgumentTypeError(f"unknown reason {text!r}: one of {', '.join(REASON_CHOICES)}")


_DURATION = re.compile(r"(\d+)([smhdw])")
_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``, ``1w`` or combinations such as ``1h30m``."""
    compact = text.strip().lower()
    if not compact or _DURATION.sub("", compact):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 2h, 1d, 1h30m")
    seconds = sum(
        int(number) * _DURATION_UNITS[unit] for number, unit in _DURATION.findall(compact)
    )
    return timedelta(seconds=seconds)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _move_rate(text: str) -> int:
    value = _positive_int(text)
    if value > 500:
        raise argparse.ArgumentTypeError("at most 500 messages per second (SQS's limit)")
    return value


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dlq-url", metavar="URL", help="the DLQ (else REGWORKER_DLQ_URL)")
    common.add_argument("--region", help="AWS region (else AWS_REGION, else AWS_DEFAULT_REGION)")
    common.add_argument(
        "--localstack",
        action="store_true",
        help="talk to LocalStack via localstack-client (LOCALSTACK_HOST, default localhost:4566)",
    )
    return common


def _add_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    epilog: str,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    return actions.add_parser(
        name,
        parents=[common],
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dlq",
        description=_DESCRIPTION,
        epilog=_DLQ_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    common = _common_options()
    _register_stats(actions, common)
    _register_peek(actions, common)
    _register_replay(actions, common)
    _register_redrive(actions, common)


def _add_reason_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason",
        type=parse_reason,
        action="append",
        default=[],
        help="only this reason (repeatable; Unknown = moved by the redrive policy)",
    )


def _register_stats(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = _add_action(
        actions,
        "stats",
        "count DLQ messages by reason, with the oldest and newest failure",
        _STATS_EPILOG,
        common,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=stats_command)


def _register_peek(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = _add_action(
        actions, "peek", "show DLQ messages without consuming them", _PEEK_EPILOG, common
    )
    parser.add_argument("--max", type=_positive_int, default=10, help="at most N (%(default)s)")
    _add_reason_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=peek_command)


def _register_replay(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = _add_action(
        actions,
        "replay",
        "send DLQ messages back to the source queue, selectively",
        _REPLAY_EPILOG,
        common,
    )
    _add_reason_option(parser)
    parser.add_argument(
        "--older-than",
        type=parse_duration,
        metavar="DURATION",
        help="failed at least this long ago (30m, 2h, 1d, 1h30m)",
    )
    parser.add_argument(
        "--newer-than",
        type=parse_duration,
        metavar="DURATION",
        help="failed at most this long ago",
    )
    parser.add_argument("--max", type=_positive_int, metavar="N", help="move at most N messages")
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would move; change nothing"
    )
    parser.add_argument(
        "--rate", type=_positive_float, metavar="N", help="at most N messages per second"
    )
    parser.add_argument("--to", metavar="QUEUE_URL", help="destination (else REGWORKER_QUEUE_URL)")
    parser.add_argument(
        "--include-terminal", action="store_true", help="replay InvalidToken and ExpiredToken too"
    )
    parser.add_argument(
        "--max-replays",
        type=_non_negative_int,
        default=DEFAULT_MAX_REPLAYS,
        metavar="N",
        help="refuse messages already replayed N times (%(default)s)",
    )
    parser.add_argument(
        "--audit-log", metavar="FILE", help="append one JSON line per moved message"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=replay_command)


def _register_redrive(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = _add_action(
        actions,
        "redrive",
        "move every DLQ message with SQS's native move task",
        _REDRIVE_EPILOG,
        common,
    )
    parser.add_argument(
        "--to",
        metavar="ARN",
        help="destination queue ARN or URL (else REGWORKER_QUEUE_URL, else the queues the"
        " messages came from)",
    )
    parser.add_argument(
        "--rate", type=_move_rate, metavar="N", help="at most N messages per second (1-500)"
    )
    parser.add_argument("--wait", action="store_true", help="poll until the task finishes")
    parser.add_argument("--json", action="store_true", help="print the task as JSON")
    parser.set_defaults(handler=redrive_command)


Action = Callable[[argparse.Namespace, Target], int]


def _run_action(args: argparse.Namespace, action: Action, destination: Destination) -> int:
    name = f"regworker dlq {args.dlq_command}"
    try:
        target = target_from(args, os.environ, destination=destination)
        return action(args, target)
    except UsageError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (DlqError, ClientError, BotoCoreError) as error:
        print(f"{name}: {_describe_error(error)}", file=sys.stderr)
        return EXIT_FAILURE


def _describe_error(error: BaseException) -> str:
    if isinstance(error, ClientError):
        operation = error.operation_name
        return f"{operation}: {error_code(error)}: {describe(error)}"
    return describe(error)


def _print_json(document: Mapping[str, Any]) -> None:
    print(json.dumps(document, indent=2, default=str))


def stats_command(args: argparse.Namespace) -> int:
    return _run_action(args, _stats, "none")


def _stats(args: argparse.Namespace, target: Target) -> int:
    report = collect_stats(sqs_client(target), target.dlq_url)
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.render())
    return EXIT_OK


def peek_command(args: argparse.Namespace) -> int:
    return _run_action(args, _peek, "none")


def _peek(args: argparse.Namespace, target: Target) -> int:
    messages = peek(sqs_client(target), target.dlq_url, args.max, frozenset(args.reason))
    if args.json:
        _print_json(
            {"queue_url": target.dlq_url, "messages": [describe_message(m) for m in messages]}
        )
        return EXIT_OK
    if not messages:
        print("No matching messages." if args.reason else "The DLQ is empty.")
        return EXIT_OK
    print(f"{len(messages)} message(s), left in the DLQ:\n")
    print("\n\n".join(render_message(message) for message in messages))
    return EXIT_OK


def replay_command(args: argparse.Namespace) -> int:
    return _run_action(args, _replay, "required")


def replay_options(args: argparse.Namespace) -> ReplayOptions:
    return ReplayOptions(
        reasons=frozenset(args.reason),
        older_than=args.older_than,
        newer_than=args.newer_than,
        max_messages=args.max,
        dry_run=args.dry_run,
        rate=args.rate,
        include_terminal=args.include_terminal,
        max_replays=args.max_replays,
    )


@contextmanager
def _audit_stream(path: str | None, dry_run: bool) -> Iterator[TextIO | None]:
    if path is None or dry_run:  # a dry run changes nothing, not even the audit file
        yield None
        return
    try:
        stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as error:
        raise UsageError(f"--audit-log: cannot open {path}: {error.strerror}") from None
    with stream:
        yield stream


def _replay(args: argparse.Namespace, target: Target) -> int:
    options = replay_options(args)
    client = sqs_client(target)
    expected = queue_depth(client, target.dlq_url).visible
    if options.max_messages is not None:
        expected = min(expected, options.max_messages)
    with _audit_stream(args.audit_log, options.dry_run) as stream:
        replayer = Replayer(
            client,
            target.dlq_url,
            target.destination_url,
            options,
            audit=AuditLog(stream, target.destination_url),
            progress=Progress(sys.stderr, expected),
        )
        stop = StopFlag()
        with sigint_stops(stop):
            try:
                summary = replayer.run(stop)
            except KeyboardInterrupt:
                summary = replayer.summary
                summary.interrupted = True
            with stop.shield():
                _print_replay(args, summary, options)
    return summary.exit_code


def _print_replay(args: argparse.Namespace, summary: ReplaySummary, options: ReplayOptions) -> None:
    if args.json:
        _print_json(summary.to_json())
        return
    for planned in summary.would_move:
        print(
            f"would move  {planned['message_id']}  {planned['reason']}"
            f"  replay {planned['replay_count']}->{planned['replay_count'] + 1}"
            f"  token {planned['token_ref'] or '-'}"
        )
    for refused in summary.refused_messages:
        print(
            f"refused     {refused['message_id']}  {refused['reason']}"
            f"  replay_count {refused['replay_count']} (from the message)"
            f"  token {refused['token_ref'] or '-'}"
        )
    print(summary.render(options.max_replays))


def redrive_command(args: argparse.Namespace) -> int:
    return _run_action(args, _redrive, "optional")


def _redrive(args: argparse.Namespace, target: Target) -> int:
    client = sqs_client(target)
    destination = target.destination_url or None
    task = start_redrive(client, target.dlq_url, destination=destination, rate=args.rate)
    print(
        f"started a move task from {task.source_arn}"
        f" to {destination or 'the queues the messages came from'}",
        file=sys.stderr,
    )
    if not args.wait:
        if args.json:
            _print_json({"task_handle": task.handle, "source_arn": task.source_arn})
        else:
            print(f"task {task.handle}")
            print(f"follow it: aws sqs list-message-move-tasks --source-arn {task.source_arn}")
        return EXIT_OK
    try:
        final = wait_for_redrive(client, task, on_status=_status_printer())
    except KeyboardInterrupt:
        print(
            "regworker dlq redrive: stopped watching; the move task keeps running"
            " (aws sqs cancel-message-move-task stops it)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if args.json:
        _print_json(dict(final))
    else:
        print(describe_move_task(final))
    if final.get("Status") == "COMPLETED":
        return EXIT_OK
    if destination is None:
        print(_NO_SOURCE_HINT, file=sys.stderr)
    return EXIT_FAILURE


def _status_printer() -> Callable[[ListMessageMoveTasksResultEntryTypeDef], None]:
    """Print a status line on stderr whenever it changes."""
    last = ""

    def show(task: ListMessageMoveTasksResultEntryTypeDef) -> None:
        nonlocal last
        line = describe_move_task(task)
        if line != last:
            print(line, file=sys.stderr)
            last = line

    return show

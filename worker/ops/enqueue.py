"""Put registration tokens on the queue: the web tier's one call, sync or async.

The buyer's browser POSTs ``x-amzn-marketplace-token`` (and, for free trials,
``x-amzn-marketplace-offer-type``) to the seller's landing page. The landing page hands
that form to this module and redirects the buyer at once; the worker resolves the
token a moment later. A body is checked with the worker's own parser before it is
sent, so a bad token fails here with an ``InvalidRequest`` (a ``ValueError``) instead of
in the DLQ later.

Sync (Flask, Django; create the enqueuer once, at startup)::

    from worker.ops.enqueue import Enqueuer

    enqueuer = Enqueuer(queue_url, region="us-east-1")
    message_id = enqueuer.enqueue_form(request.get_data())

Async (aiohttp, Starlette; the SQS client stays open for the app's life)::

    from worker.ops.enqueue import AsyncEnqueuer

    async with AsyncEnqueuer(queue_url, region="us-east-1") as enqueuer:
        message_id = await enqueuer.enqueue(token, offer_type="free-trial")

Both raise ``MissingToken`` when the form has no token (answer 400), ``InvalidRequest``
for a token that can never resolve (400) and ``EnqueueFailed`` when SQS did not take
the message (answer 503; nothing was enqueued, so the buyer can simply retry).

``attributes=`` adds SQS message attributes (strings) for the web tier's own use. Names
starting with ``dlq_`` and the name ``replay_count`` are refused (``InvalidRequest``):
the worker writes those on its dead letters and ``regworker dlq`` reads them, so a
sender must not be able to set them.

On a FIFO queue (URL ending ``.fifo``) each token is its own message group and its
sha256 is the deduplication id, so SQS drops the same token sent twice within 5 minutes.

From a shell, ``regworker enqueue TOKEN...`` or ``regworker enqueue --file tokens.txt``
does the same in batches of 10 (see ``register``); ``examples/landing.py`` is a complete
landing page built on ``AsyncEnqueuer``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TextIO, cast
from urllib.parse import parse_qs

import boto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.sqs_wire import MAX_BATCH, batch_results
from worker.core.dead_letter import REPLAY_COUNT
from worker.core.errors import MalformedMessage, RegworkerError
from worker.core.events import token_ref, token_sha256
from worker.core.request import OFFER_TYPE_FIELD, TOKEN_FIELD, parse_body

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import (
        SendMessageBatchRequestEntryTypeDef,
        SendMessageBatchResultTypeDef,
    )
    from types_aiobotocore_sqs.client import SQSClient as AsyncSQSClient
    from types_aiobotocore_sqs.type_defs import (
        SendMessageBatchRequestEntryTypeDef as AsyncBatchEntryTypeDef,
    )

MAX_FORM_FIELDS: Final = 50
# Pauses before the 2nd and 3rd try of the entries of a batch that failed.
RETRY_DELAYS: Final = (0.2, 0.8)
# A web request waits on this call: fail fast rather than hold the buyer's page.
CONNECT_TIMEOUT: Final = 2.0
READ_TIMEOUT: Final = 5.0

RESERVED_ATTRIBUTE_PREFIX: Final = "dlq_"

Progress = Callable[[int], None]


class InvalidRequest(ValueError):
    """The token or another field can never be resolved; the message says why (never
    the token itself)."""


class MissingToken(InvalidRequest):
    """The posted form has no ``x-amzn-marketplace-token``."""


class EnqueueFailed(RegworkerError):
    """SQS did not take the message, so nothing was enqueued: safe to retry."""


# ---------------------------------------------------------------- bodies


def build_body(
    token: str,
    offer_type: str | None = None,
    correlation_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
    received_at: datetime | None = None,
) -> str:
    """The JSON envelope of ``schemas/registration-request.schema.json``, checked with
    the worker's parser. Raises ``InvalidRequest``."""
    document: dict[str, Any] = {
        "registration_token": token,
        "correlation_id": correlation_id or uuid.uuid4().hex,
        "received_at": _timestamp(received_at),
    }
    if offer_type:
        document["offer_type"] = offer_type
    if metadata:
        document["metadata"] = dict(metadata)
    try:
        body = json.dumps(document, separators=(",", ":"))
    except (TypeError, ValueError):
        raise InvalidRequest("metadata values must be strings") from None
    try:
        parse_body(body)
    except MalformedMessage as error:
        raise InvalidRequest(error.detail) from None
    return body


def body_from_form(
    form_body: str | bytes | Mapping[str, str],
    *,
    correlation_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
    received_at: datetime | None = None,
) -> str:
    """The envelope for what the browser posted: the raw form body, or the form already
    parsed by a framework. Raises ``MissingToken`` or ``InvalidRequest``."""
    token, offer_type = form_fields(form_body)
    return build_body(token, offer_type, correlation_id, metadata, received_at)


def form_fields(form_body: str | bytes | Mapping[str, str]) -> tuple[str, str | None]:
    """The token and offer type of a posted form. Raises ``MissingToken`` or
    ``InvalidRequest``."""
    if isinstance(form_body, Mapping):
        token, offer_type = form_body.get(TOKEN_FIELD), form_body.get(OFFER_TYPE_FIELD)
    else:
        token, offer_type = _parse_form(form_body)
    if not token:
        raise MissingToken(f"the form has no {TOKEN_FIELD}")
    if not isinstance(token, str) or not isinstance(offer_type, str | None):
        raise InvalidRequest("form fields must be text")
    return token, offer_type or None


def _parse_form(form_body: str | bytes) -> tuple[str | None, str | None]:
    try:
        text = form_body.decode("utf-8") if isinstance(form_body, bytes) else form_body
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # not UTF-8, or too many fields
        raise InvalidRequest("the form body does not parse") from None
    tokens = fields.get(TOKEN_FIELD, [])
    offer_types = fields.get(OFFER_TYPE_FIELD, [])
    if len(tokens) > 1 or len(offer_types) > 1:
        raise InvalidRequest("the form repeats a marketplace field")
    return (tokens[0] if tokens else None), (offer_types[0] if offer_types else None)


def is_reserved_attribute(name: str) -> bool:
    """A message attribute name the worker and ``regworker dlq`` keep to themselves
    (case aside, so that no look-alike gets through either)."""
    folded = name.lower()
    return folded.startswith(RESERVED_ATTRIBUTE_PREFIX) or folded == REPLAY_COUNT


def message_attributes(attributes: Mapping[str, str] | None) -> dict[str, Any]:
    """The sender's attributes as SQS String attributes; raises ``InvalidRequest`` for a
    reserved name or a value that is not a string. Names are not quoted back."""
    if not attributes:
        return {}
    reserved = sum(1 for name in attributes if is_reserved_attribute(str(name)))
    if reserved:
        raise InvalidRequest(
            f"{reserved} of the {len(attributes)} message attributes given have a reserved"
            f" name: names starting with {RESERVED_ATTRIBUTE_PREFIX} and {REPLAY_COUNT} are"
            " written by the worker on dead letters and read by `regworker dlq`"
        )
    if not all(isinstance(name, str) and isinstance(v, str) for name, v in attributes.items()):
        raise InvalidRequest("message attribute names and values must be strings")
    return {
        name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
    }


def _timestamp(moment: datetime | None) -> str:
    if moment is None:
        moment = datetime.now(UTC)
    elif moment.tzinfo is None:
        raise InvalidRequest("received_at must carry a time zone")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- batches


@dataclass(frozen=True)
class SentToken:
    index: int  # position in the tokens given to enqueue_many
    token_ref: str
    message_id: str


@dataclass(frozen=True)
class FailedToken:
    index: int
    token_ref: str
    reason: str


@dataclass(frozen=True)
class EnqueueReport:
    sent: tuple[SentToken, ...]
    failed: tuple[FailedToken, ...]

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class _Pending:
    index: int
    token: str = field(repr=False)  # never in a repr, a traceback or a debug log
    body: str = field(repr=False)


@dataclass
class _Tally:
    """What enqueue_many has settled so far."""

    progress: Progress | None = None
    sent: list[SentToken] = field(default_factory=list)
    failed: list[FailedToken] = field(default_factory=list)
    told: int = 0

    def tell_progress(self) -> None:
        """Pass the number of tokens settled since the last call to ``progress``."""
        settled = len(self.sent) + len(self.failed)
        if self.progress is not None and settled > self.told:
            self.progress(settled - self.told)
        self.told = settled

    def fail(self, item: _Pending, reason: str) -> None:
        self.failed.append(FailedToken(item.index, token_ref(item.token), reason))

    def absorb(
        self, batch: Sequence[_Pending], answer: SendMessageBatchResultTypeDef, last_try: bool
    ) -> list[_Pending]:
        """Record each entry's outcome; return the entries worth another try."""
        retry: list[_Pending] = []
        for item, result in zip(batch, batch_results(len(batch), answer), strict=True):
            error = result.error
            if error is None:
                self.sent.append(SentToken(item.index, token_ref(item.token), result.message_id))
                continue
            reason = f"{error.code}: {error.message}" if error.answered else "no answer"
            if last_try or error.sender_fault:
                self.fail(item, reason)
            else:
                retry.append(item)
        return retry

    def call_failed(
        self, batch: Sequence[_Pending], error: Exception, last_try: bool
    ) -> list[_Pending]:
        if not last_try:
            return list(batch)
        for item in batch:
            self.fail(item, describe(error))
        return []

    def report(self) -> EnqueueReport:
        return EnqueueReport(
            sent=tuple(sorted(self.sent, key=lambda item: item.index)),
            failed=tuple(sorted(self.failed, key=lambda item: item.index)),
        )


def _prepare(
    tokens: Iterable[str], offer_type: str | None, tally: _Tally
) -> Iterable[list[_Pending]]:
    """Batches of checked bodies; tokens that can never resolve are failed at once."""
    batch: list[_Pending] = []
    for index, token in enumerate(tokens):
        try:
            batch.append(_Pending(index, token, build_body(token, offer_type)))
        except InvalidRequest as error:
            tally.fail(_Pending(index, token, ""), f"invalid: {error}")
        if len(batch) == MAX_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _entries(batch: Sequence[_Pending], fifo: bool) -> list[SendMessageBatchRequestEntryTypeDef]:
    entries: list[SendMessageBatchRequestEntryTypeDef] = []
    for position, item in enumerate(batch):
        entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(position), "MessageBody": item.body}
        if fifo:
            entry["MessageGroupId"] = token_ref(item.token)
            entry["MessageDeduplicationId"] = token_sha256(item.token)
        entries.append(entry)
    return entries


def _send_fields(token: str, fifo: bool, attributes: Mapping[str, str] | None) -> dict[str, Any]:
    """SendMessage's optional fields: FIFO ids from the token, the sender's attributes."""
    fields: dict[str, Any] = {}
    if fifo:
        fields["MessageGroupId"] = token_ref(token)
        fields["MessageDeduplicationId"] = token_sha256(token)
    if attributes:
        fields["MessageAttributes"] = message_attributes(attributes)
    return fields


def describe(error: Exception) -> str:
    """A short reason for a failed SQS call: the error code, or the botocore message."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code, message = details.get("Code", "Unknown"), details.get("Message", "")
        return f"{code}: {message}" if message else code
    return str(error)


# ---------------------------------------------------------------- enqueuers


def is_fifo(queue_url: str) -> bool:
    return queue_url.endswith(".fifo")


class Enqueuer:
    """Sends tokens with a boto3 SQS client (made here unless one is given)."""

    def __init__(
        self, queue_url: str, sqs_client: SQSClient | None = None, region: str | None = None
    ) -> None:
        self.queue_url = queue_url
        self.fifo = is_fifo(queue_url)
        self._client = sqs_client or boto3.session.Session().client(
            "sqs",
            region_name=region,
            config=Config(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                retries={"mode": "standard"},
            ),
        )

    def enqueue(
        self,
        token: str,
        offer_type: str | None = None,
        *,
        correlation_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Send one token; returns the SQS MessageId."""
        body = build_body(token, offer_type, correlation_id, metadata, received_at)
        fields = _send_fields(token, self.fifo, attributes)
        return self._send(body, fields)

    def enqueue_form(
        self,
        form_body: str | bytes | Mapping[str, str],
        *,
        correlation_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Send what the browser posted; returns the SQS MessageId."""
        token, offer_type = form_fields(form_body)
        return self.enqueue(
            token,
            offer_type,
            correlation_id=correlation_id,
            metadata=metadata,
            received_at=received_at,
            attributes=attributes,
        )

    def enqueue_many(
        self,
        tokens: Iterable[str],
        progress: Progress | None = None,
        *,
        offer_type: str | None = None,
    ) -> EnqueueReport:
        """Send tokens in batches of 10. ``progress`` is called with the number of
        tokens settled (sent or failed) after each batch."""
        tally = _Tally(progress)
        for batch in _prepare(tokens, offer_type, tally):
            self._send_batch(batch, tally)
            tally.tell_progress()
        tally.tell_progress()
        return tally.report()

    def _send(self, body: str, fields: dict[str, Any]) -> str:
        try:
            answer = self._client.send_message(QueueUrl=self.queue_url, MessageBody=body, **fields)
        except (ClientError, BotoCoreError) as error:
            raise EnqueueFailed(f"SendMessage failed: {describe(error)}") from error
        return answer["MessageId"]

    def _send_batch(self, batch: list[_Pending], tally: _Tally) -> None:
        for attempt in range(len(RETRY_DELAYS) + 1):
            last_try = attempt == len(RETRY_DELAYS)
            try:
                answer = self._client.send_message_batch(
                    QueueUrl=self.queue_url, Entries=_entries(batch, self.fifo)
                )
            except (ClientError, BotoCoreError) as error:
                batch = tally.call_failed(batch, error, last_try)
            else:
                batch = tally.absorb(batch, answer, last_try)
            if not batch:
                return
            time.sleep(RETRY_DELAYS[attempt])


class AsyncEnqueuer:
    """Sends tokens with an aiobotocore SQS client: the one given, or one opened by
    ``async with`` and closed when the block ends."""

    def __init__(
        self, queue_url: str, sqs_client: AsyncSQSClient | None = None, region: str | None = None
    ) -> None:
        self.queue_url = queue_url
        self.fifo = is_fifo(queue_url)
        self.region = region
        self._client = sqs_client
        self._exit_stack: AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        if self._client is None:
            stack = AsyncExitStack()
            config = AioConfig(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                retries={"mode": "standard"},
            )
            self._client = await stack.enter_async_context(
                get_session().create_client("sqs", region_name=self.region, config=config)
            )
            self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._exit_stack is not None:
            await self._exit_stack.aclose()
            self._exit_stack = None
            self._client = None

    @property
    def client(self) -> AsyncSQSClient:
        if self._client is None:
            raise RuntimeError("AsyncEnqueuer: pass sqs_client or use it in 'async with'")
        return self._client

    async def enqueue(
        self,
        token: str,
        offer_type: str | None = None,
        *,
        correlation_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Send one token; returns the SQS MessageId."""
        body = build_body(token, offer_type, correlation_id, metadata, received_at)
        fields = _send_fields(token, self.fifo, attributes)
        return await self._send(body, fields)

    async def enqueue_form(
        self,
        form_body: str | bytes | Mapping[str, str],
        *,
        correlation_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        received_at: datetime | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> str:
        """Send what the browser posted; returns the SQS MessageId."""
        token, offer_type = form_fields(form_body)
        return await self.enqueue(
            token,
            offer_type,
            correlation_id=correlation_id,
            metadata=metadata,
            received_at=received_at,
            attributes=attributes,
        )

    async def enqueue_many(
        self,
        tokens: Iterable[str],
        progress: Progress | None = None,
        *,
        offer_type: str | None = None,
    ) -> EnqueueReport:
        """Send tokens in batches of 10. ``progress`` is called with the number of
        tokens settled (sent or failed) after each batch."""
        tally = _Tally(progress)
        for batch in _prepare(tokens, offer_type, tally):
            await self._send_batch(batch, tally)
            tally.tell_progress()
        tally.tell_progress()
        return tally.report()

    async def _send(self, body: str, fields: dict[str, Any]) -> str:
        try:
            answer = await self.client.send_message(
                QueueUrl=self.queue_url, MessageBody=body, **fields
            )
        except (ClientError, BotoCoreError) as error:
            raise EnqueueFailed(f"SendMessage failed: {describe(error)}") from error
        return answer["MessageId"]

    async def _send_batch(self, batch: list[_Pending], tally: _Tally) -> None:
        for attempt in range(len(RETRY_DELAYS) + 1):
            last_try = attempt == len(RETRY_DELAYS)
            try:
                # The same entries: the two stub packages only type blob attributes apart.
                entries = cast("list[AsyncBatchEntryTypeDef]", _entries(batch, self.fifo))
                answer = await self.client.send_message_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
            except (ClientError, BotoCoreError) as error:
                batch = tally.call_failed(batch, error, last_try)
            else:
                batch = tally.absorb(batch, answer, last_try)
            if not batch:
                return
            await asyncio.sleep(RETRY_DELAYS[attempt])


# ---------------------------------------------------------------- command line

PROGRESS_THRESHOLD: Final = 50
MAX_FAILURES_SHOWN: Final = 20


class UsageError(Exception):
    """Bad arguments or input for ``regworker enqueue`` (exit code 2)."""


@dataclass(frozen=True)
class TokenLine:
    where: str  # "line 12" or "argument 3": a place a person can find, not the token
    token: str = field(repr=False)


class ProgressBar:
    """``[#####.....] 120/500`` on one line of a terminal, redrawn in place."""

    WIDTH: Final = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream

    def advance(self, count: int) -> None:
        self.done += count
        filled = self.WIDTH * min(self.done, self.total) // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total}")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "enqueue",
        description="Put registration tokens on the queue as the web tier does: each one is"
        " checked, wrapped in the JSON envelope and sent in batches of 10. Tokens are never"
        " printed: reports name them by line (or argument) and a 12-hex sha256 prefix.",
        epilog="The queue URL comes from --queue-url, else REGWORKER_QUEUE_URL; AWS endpoints"
        " and credentials from the standard AWS variables. Exit codes: 0 all sent, 1 some"
        " failed, 2 bad usage.",
    )
    parser.add_argument("tokens", nargs="*", metavar="TOKEN", help="tokens to enqueue")
    parser.add_argument(
        "--file",
        metavar="FILE",
        help="read tokens from FILE, one a line ('-' reads stdin); blank lines and lines"
        " starting with # are skipped",
    )
    parser.add_argument("--queue-url", help="the registration queue (REGWORKER_QUEUE_URL)")
    parser.add_argument("--offer-type", help="offer type for every token, e.g. free-trial")
    parser.add_argument("--region", help="AWS region (default: the AWS variables)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    try:
        queue_url = _queue_url(args.queue_url or os.environ.get("REGWORKER_QUEUE_URL", ""))
        lines = _token_lines(args.tokens, args.file)
        _check_offer_type(args.offer_type)
        enqueuer = Enqueuer(queue_url, region=args.region or _region_from_env())
    except (UsageError, BotoCoreError) as error:
        print(f"regworker enqueue: {error}", file=sys.stderr)
        return 2
    report = _enqueue_with_progress(enqueuer, lines, args.offer_type)
    if args.json:
        print(json.dumps(_report_document(report, lines, queue_url), indent=2))
    else:
        _print_failures(report, lines)
        print(f"sent {len(report.sent)}, failed {len(report.failed)}")
    return 0 if report.ok else 1


def _queue_url(value: str) -> str:
    if not value:
        raise UsageError("no queue URL: pass --queue-url or set REGWORKER_QUEUE_URL")
    if not value.startswith(("http://", "https://")):
        raise UsageError("the queue URL must start with http:// or https://")
    return value


def _region_from_env() -> str | None:
    """The worker's own precedence; None lets botocore read AWS_DEFAULT_REGION and config."""
    return os.environ.get("REGWORKER_AWS_REGION") or os.environ.get("AWS_REGION") or None


def _check_offer_type(offer_type: str | None) -> None:
    if offer_type is None:
        return
    try:
        build_body("probe", offer_type)
    except InvalidRequest as error:
        raise UsageError(f"--offer-type: {error}") from None


def _token_lines(arguments: Sequence[str], path: str | None) -> list[TokenLine]:
    if arguments and path:
        raise UsageError("give tokens as arguments or --file, not both")
    if path is None:
        lines = [TokenLine(f"argument {n}", text) for n, text in enumerate(arguments, 1)]
    else:
        lines = [TokenLine(f"line {n}", text) for n, text in enumerate(_read_lines(path), 1)]
    tokens = [
        TokenLine(line.where, line.token.strip())
        for line in lines
        if line.token.strip() and not line.token.lstrip().startswith("#")
    ]
    if not tokens:
        raise UsageError("no tokens given (pass TOKEN... or --file FILE)")
    return tokens


def _read_lines(path: str) -> list[str]:
    try:
        if path == "-":
            return sys.stdin.read().splitlines()
        with open(path, encoding="utf-8") as source:
            return source.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None


def _enqueue_with_progress(
    enqueuer: Enqueuer, lines: Sequence[TokenLine], offer_type: str | None
) -> EnqueueReport:
    show = len(lines) > PROGRESS_THRESHOLD and sys.stderr.isatty()
    bar = ProgressBar(len(lines), sys.stderr) if show else None
    try:
        return enqueuer.enqueue_many(
            (line.token for line in lines),
            progress=bar.advance if bar else None,
            offer_type=offer_type,
        )
    finally:
        if bar is not None:
            bar.close()


def _print_failures(report: EnqueueReport, lines: Sequence[TokenLine]) -> None:
    for failure in report.failed[:MAX_FAILURES_SHOWN]:
        where = lines[failure.index].where
        print(
            f"regworker enqueue: {where} (token {failure.token_ref}): {failure.reason}",
            file=sys.stderr,
        )
    hidden = len(report.failed) - MAX_FAILURES_SHOWN
    if hidden > 0:
        print(
            f"regworker enqueue: ... and {hidden} more failures (--json lists all)", file=sys.stderr
        )


def _report_document(
    report: EnqueueReport, lines: Sequence[TokenLine], queue_url: str
) -> dict[str, Any]:
    return {
        "queue_url": queue_url,
        "sent": len(report.sent),
        "failed": len(report.failed),
        "messages": [
            {
                "where": lines[item.index].where,
                "token_sha256_prefix": item.token_ref,
                "message_id": item.message_id,
            }
            for item in report.sent
        ],
        "failures": [
            {
                "where": lines[item.index].where,
                "token_sha256_prefix": item.token_ref,
                "reason": item.reason,
            }
            for item in report.failed
        ],
    }

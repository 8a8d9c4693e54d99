"""Everything an enqueue does without an SQS client, shared by ``Enqueuer`` and
``AsyncEnqueuer`` (``worker.ops.enqueue``), which only make the calls.

- the errors: ``InvalidRequest`` / ``MissingToken`` (answer 400) and ``EnqueueFailed``
  (answer 503);
- what is sent: the JSON envelope (checked with the worker's own parser), SendMessage's
  fields (FIFO ids, the sender's attributes) and SendMessageBatch's entries;
- what came back: a batch answer tallied into an ``EnqueueReport``, and which entries
  SQS reported failed are worth sending again (``BatchRun``).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.sqs_wire import MAX_BATCH, batch_results
from worker.core.dead_letter import REPLAY_COUNT
from worker.core.errors import MalformedMessage, RegworkerError
from worker.core.events import TRACEPARENT, token_ref, token_sha256
from worker.core.faults import describe_with_code
from worker.core.request import OFFER_TYPE_FIELD, TOKEN_FIELD, parse_body
from worker.core.tracing import current_headers

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import (
        SendMessageBatchRequestEntryTypeDef,
        SendMessageBatchResultTypeDef,
    )

MAX_FORM_FIELDS: Final = 50
RESERVED_ATTRIBUTE_PREFIX: Final = "dlq_"
MAX_MESSAGE_ATTRIBUTES: Final = 10  # SQS takes no more on one message
# botocore's standard-mode backoff: before attempt n+1, a random pause of up to 2**(n-1) s.
BACKOFF_BASE: Final = 2
MAX_BACKOFF_SECONDS: Final = 20.0

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
    """The sender's attributes as SQS String attributes, and the current span's
    ``traceparent`` (W3C) unless the sender gave one; raises ``InvalidRequest`` for a
    reserved name or a value that is not a string. Names are not quoted back."""
    given = sender_attributes(attributes)
    traceparent = current_headers().traceparent
    if traceparent and TRACEPARENT not in given and len(given) < MAX_MESSAGE_ATTRIBUTES:
        given[TRACEPARENT] = {"DataType": "String", "StringValue": traceparent}
    return given


def sender_attributes(attributes: Mapping[str, str] | None) -> dict[str, Any]:
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


def send_request(
    queue_url: str,
    token: str,
    offer_type: str | None = None,
    *,
    correlation_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
    received_at: datetime | None = None,
    attributes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """SendMessage's arguments for one token: the checked envelope, FIFO ids from the
    token (on a ``.fifo`` queue) and the sender's attributes. Raises ``InvalidRequest``."""
    request: dict[str, Any] = {
        "QueueUrl": queue_url,
        "MessageBody": build_body(token, offer_type, correlation_id, metadata, received_at),
    }
    if is_fifo(queue_url):
        request["MessageGroupId"] = token_ref(token)
        request["MessageDeduplicationId"] = token_sha256(token)
    if sent := message_attributes(attributes):
        request["MessageAttributes"] = sent
    return request


def form_request(
    queue_url: str,
    form_body: str | bytes | Mapping[str, str],
    *,
    correlation_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
    received_at: datetime | None = None,
    attributes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """SendMessage's arguments for what the browser posted. Raises ``MissingToken`` or
    ``InvalidRequest``."""
    token, offer_type = form_fields(form_body)
    return send_request(
        queue_url,
        token,
        offer_type,
        correlation_id=correlation_id,
        metadata=metadata,
        received_at=received_at,
        attributes=attributes,
    )


def send_failed(error: Exception) -> EnqueueFailed:
    """The ``EnqueueFailed`` to raise for a SendMessage that failed (after botocore's
    retries)."""
    return EnqueueFailed(f"SendMessage failed: {describe_with_code(error)}")


def is_fifo(queue_url: str) -> bool:
    return queue_url.endswith(".fifo")


# The errors a client call raises that mean "SQS did not take it" (the rest are bugs).
CALL_ERRORS: Final = (ClientError, BotoCoreError)


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


@dataclass(frozen=True)
class BatchCall:
    """One SendMessageBatch to make, after ``pause`` seconds (0 for a batch's first)."""

    request: dict[str, Any]
    pause: float


def backoff(attempt: int) -> float:
    """The pause before ``attempt`` (2 or more), as botocore's standard mode jitters it."""
    ceiling = min(float(BACKOFF_BASE ** (attempt - 2)), MAX_BACKOFF_SECONDS)
    return random.random() * ceiling  # noqa: S311 (jitter, not a secret)


class BatchRun:
    """One ``enqueue_many``: the SendMessageBatch calls to make, and the report.

    The caller iterates ``calls()``, makes each call and hands back its answer
    (``answered``) or its error (``failed``) before asking for the next::

        for call in run.calls():
            sleep(call.pause)
            try:
                run.answered(client.send_message_batch(**call.request))
            except CALL_ERRORS as error:
                run.failed(error)

    A call that fails as a whole has been retried by botocore already, so its entries
    are reported failed at once. Entries SQS reports failed and not the sender's fault
    (or leaves unanswered) are sent again, after botocore's backoff, until each has
    been sent ``attempts`` times: the bound the client gives one call.
    """

    def __init__(
        self,
        queue_url: str,
        tokens: Iterable[str],
        *,
        attempts: int,
        offer_type: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.queue_url = queue_url
        self.attempts = attempts
        self._tokens = tokens
        self._offer_type = offer_type
        self._tally = _Tally(progress)
        self._pending: list[_Pending] = []
        self._last_try = False

    def calls(self) -> Iterator[BatchCall]:
        for batch in _prepare(self._tokens, self._offer_type, self._tally):
            self._pending = batch
            for attempt in range(1, self.attempts + 1):
                self._last_try = attempt == self.attempts
                pause = backoff(attempt) if attempt > 1 else 0.0
                yield BatchCall(self._request(), pause)
                if not self._pending:
                    break
            self._tally.tell_progress()
        self._tally.tell_progress()

    def answered(self, answer: SendMessageBatchResultTypeDef) -> None:
        self._pending = self._tally.absorb(self._pending, answer, self._last_try)

    def failed(self, error: Exception) -> None:
        for item in self._pending:
            self._tally.fail(item, describe_with_code(error))
        self._pending = []

    def report(self) -> EnqueueReport:
        return self._tally.report()

    def _request(self) -> dict[str, Any]:
        return {"QueueUrl": self.queue_url, "Entries": _entries(self._pending, self.queue_url)}


@dataclass
class _Tally:
    """What a batch run has settled so far."""

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

    def report(self) -> EnqueueReport:
        return EnqueueReport(
            sent=tuple(sorted(self.sent, key=lambda item: item.index)),
            failed=tuple(sorted(self.failed, key=lambda item: item.index)),
        )


def _prepare(
    tokens: Iterable[str], offer_type: str | None, tally: _Tally
) -> Iterator[list[_Pending]]:
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


def _entries(
    batch: Sequence[_Pending], queue_url: str
) -> list[SendMessageBatchRequestEntryTypeDef]:
    fifo = is_fifo(queue_url)
    traced = message_attributes(None)  # the caller's span, if any: one for the batch
    entries: list[SendMessageBatchRequestEntryTypeDef] = []
    for position, item in enumerate(batch):
        entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(position), "MessageBody": item.body}
        if traced:
            entry["MessageAttributes"] = traced
        if fifo:
            entry["MessageGroupId"] = token_ref(item.token)
            entry["MessageDeduplicationId"] = token_sha256(item.token)
        entries.append(entry)
    return entries

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

How long a failure takes. A web request waits on ``enqueue``, so the clients these
classes build give up within ``CALL_BOUND_SECONDS`` (6 s): botocore's standard retry
mode makes at most ``ATTEMPTS`` (2) attempts, each bounded by ``CONNECT_TIMEOUT`` (1 s)
and ``READ_TIMEOUT`` (1.5 s without a byte), with one jittered pause of at most 1 s
between them: 2 x (1 + 1.5) + 1 = 6 s. (A host name with several addresses that all
drop the connection attempt, or a server that trickles bytes, can stretch one attempt:
the timeouts are per connect and per read, as botocore applies them.) SendMessage
answers in tens of milliseconds, so 1.5 s without a byte means a sick connection that
a second attempt on a fresh one is likelier to get through than waiting on; a second
retry would push the worst case past 10 s, while the buyer's page is held and a 503
lets the browser retry anyway. (A client passed in as ``sqs_client`` keeps its own
settings.) Nothing here retries on top of botocore, except ``enqueue_many``: entries
that SQS reports failed (not the sender's fault) are sent again until each has been
sent ``ATTEMPTS`` times.

From a shell, ``regworker enqueue TOKEN...`` or ``regworker enqueue --file tokens.txt``
does the same in batches of 10 (``worker.cli.enqueue``); ``examples/landing.py`` is a
complete landing page built on ``AsyncEnqueuer``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import boto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.config import Config

from worker.aws.region import region_from
from worker.ops.enqueue_requests import (
    CALL_ERRORS,
    BatchRun,
    EnqueueFailed,
    EnqueueReport,
    FailedToken,
    InvalidRequest,
    MissingToken,
    Progress,
    SentToken,
    body_from_form,
    build_body,
    form_fields,
    form_request,
    is_fifo,
    send_failed,
    send_request,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from types_aiobotocore_sqs.client import SQSClient as AsyncSQSClient

__all__ = [
    "ATTEMPTS",
    "CALL_BOUND_SECONDS",
    "AsyncEnqueuer",
    "EnqueueFailed",
    "EnqueueReport",
    "Enqueuer",
    "FailedToken",
    "InvalidRequest",
    "MissingToken",
    "SentToken",
    "body_from_form",
    "build_body",
    "form_fields",
]

CONNECT_TIMEOUT: Final = 1.0
READ_TIMEOUT: Final = 1.5
ATTEMPTS: Final = 2
# botocore's standard mode waits up to 2**(n-1) s (jittered) before attempt n+1.
_LONGEST_PAUSES: Final = sum(2.0 ** (n - 1) for n in range(1, ATTEMPTS))
CALL_BOUND_SECONDS: Final = ATTEMPTS * (CONNECT_TIMEOUT + READ_TIMEOUT) + _LONGEST_PAUSES


# botocore's ``max_attempts`` counts the retries after the first attempt. Each config
# gets a dict of its own: botocore rewrites it in place when it builds a client.


def client_config() -> Config:
    """The boto3 client's settings for a web request (see the module's docstring)."""
    return Config(
        retries={"mode": "standard", "max_attempts": ATTEMPTS - 1},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


def async_client_config() -> AioConfig:
    """The same for aiobotocore."""
    return AioConfig(
        retries={"mode": "standard", "max_attempts": ATTEMPTS - 1},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


class Enqueuer:
    """Sends tokens with a boto3 SQS client (made here unless one is given). The region
    is ``region``, else the one region rule (``worker.aws.region``)."""

    def __init__(
        self, queue_url: str, sqs_client: SQSClient | None = None, region: str | None = None
    ) -> None:
        self.queue_url = queue_url
        self.fifo = is_fifo(queue_url)
        self._client = sqs_client or boto3.session.Session().client(
            "sqs", region_name=region_from(os.environ, region), config=client_config()
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
        return self._send(
            send_request(
                self.queue_url,
                token,
                offer_type,
                correlation_id=correlation_id,
                metadata=metadata,
                received_at=received_at,
                attributes=attributes,
            )
        )

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
        return self._send(
            form_request(
                self.queue_url,
                form_body,
                correlation_id=correlation_id,
                metadata=metadata,
                received_at=received_at,
                attributes=attributes,
            )
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
        run = BatchRun(
            self.queue_url, tokens, attempts=ATTEMPTS, offer_type=offer_type, progress=progress
        )
        for call in run.calls():
            time.sleep(call.pause)
            try:
                run.answered(self._client.send_message_batch(**call.request))
            except CALL_ERRORS as error:
                run.failed(error)
        return run.report()

    def _send(self, request: dict[str, Any]) -> str:
        try:
            return self._client.send_message(**request)["MessageId"]
        except CALL_ERRORS as error:
            raise send_failed(error) from error


class AsyncEnqueuer:
    """Sends tokens with an aiobotocore SQS client: the one given, or one opened by
    ``async with`` and closed when the block ends. The region is ``region``, else the
    one region rule (``worker.aws.region``)."""

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
            region = region_from(os.environ, self.region)
            self._client = await stack.enter_async_context(
                get_session().create_client("sqs", region_name=region, config=async_client_config())
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
        return await self._send(
            send_request(
                self.queue_url,
                token,
                offer_type,
                correlation_id=correlation_id,
                metadata=metadata,
                received_at=received_at,
                attributes=attributes,
            )
        )

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
        return await self._send(
            form_request(
                self.queue_url,
                form_body,
                correlation_id=correlation_id,
                metadata=metadata,
                received_at=received_at,
                attributes=attributes,
            )
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
        run = BatchRun(
            self.queue_url, tokens, attempts=ATTEMPTS, offer_type=offer_type, progress=progress
        )
        for call in run.calls():
            await asyncio.sleep(call.pause)
            try:
                run.answered(await self.client.send_message_batch(**call.request))
            except CALL_ERRORS as error:
                run.failed(error)
        return run.report()

    async def _send(self, request: dict[str, Any]) -> str:
        try:
            answer = await self.client.send_message(**request)
        except CALL_ERRORS as error:
            raise send_failed(error) from error
        return answer["MessageId"]

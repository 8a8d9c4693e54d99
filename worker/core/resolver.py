"""Resolve a registration token with ResolveCustomer, retrying transient failures.

Throttling, internal errors, timeouts, connection errors and 5xx are retried in place
with capped, jittered exponential backoff until the time budget is spent; then the
``TransientError`` goes to the caller, which hands the message back to the queue.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

import structlog
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ParamValidationError,
    ReadTimeoutError,
)
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_before_delay,
    wait_random_exponential,
)

from worker.core.errors import (
    ApiDisabled,
    DeadLetterReason,
    MalformedMessage,
    RegworkerError,
    TokenRefused,
    TransientError,
)
from worker.core.events import ResolvedCustomer
from worker.core.faults import THROTTLING_CODES, classify_aws_error, describe, error_code
from worker.core.flow_control import Pacer
from worker.core.tally import Tally

if TYPE_CHECKING:
    from types_aiobotocore_meteringmarketplace.client import MarketplaceMeteringClient

log = structlog.get_logger(__name__)

TOKEN_REJECTIONS: Final = {
    "InvalidTokenException": DeadLetterReason.INVALID_TOKEN,
    "ExpiredTokenException": DeadLetterReason.EXPIRED_TOKEN,
}


class ResolveThrottled(TransientError):
    """ResolveCustomer said slow down."""


def classify_resolve_error(error: Exception) -> RegworkerError:
    if isinstance(error, ClientError):
        code = error_code(error)
        if code in TOKEN_REJECTIONS:
            return TokenRefused(TOKEN_REJECTIONS[code], f"{code}: {describe(error)}")
        if code in THROTTLING_CODES:
            return ResolveThrottled(f"{code}: {describe(error)}")
        if code == "DisabledApiException":
            return ApiDisabled(f"{code}: {describe(error)}")
    if isinstance(error, ParamValidationError):
        # botocore's text quotes the value, which is the token: keep it out of logs.
        return MalformedMessage("botocore refused the token as a RegistrationToken value")
    classified = classify_aws_error(error)
    if classified is None:
        return TransientError(f"{type(error).__name__}: {describe(error)}")
    return classified


def call_result(error: Exception, failure: RegworkerError) -> str:
    """The metrics label of a failed call: throttled, timeout, connection_error, or the
    error code the service answered."""
    if isinstance(failure, ResolveThrottled):
        return "throttled"
    if isinstance(error, ClientError):
        return error_code(error) or "unknown"
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, BotoCoreError | OSError):
        return "connection_error"
    return type(error).__name__


class Resolver:
    def __init__(
        self,
        client: MarketplaceMeteringClient,
        pacer: Pacer,
        *,
        retry_base: float,
        retry_max: float,
        tally: Tally | None = None,
    ) -> None:
        self.tally = tally if tally is not None else Tally()
        self._client = client
        self._pacer = pacer
        self._retry_base = retry_base
        self._retry_max = retry_max
        self.retries = 0

    async def resolve(
        self, token: str, budget: float, *, turn_taken: bool = False
    ) -> ResolvedCustomer:
        """One token's answer. Raises Rejected, ConfigurationFault (ApiDisabled among
        them), or TransientError once ``budget`` seconds of retrying are spent.
        ``turn_taken``: the caller already waited for the pacer's turn for the first call."""
        started = time.monotonic()
        if not turn_taken:
            await self._pacer.acquire()
        try:
            return await self._call_once(token)
        except TransientError as error:
            first_error = error
        # Most calls succeed at once: tenacity's machinery is built for the others.
        return await self._retry(token, budget - (time.monotonic() - started), first_error)

    async def _retry(
        self, token: str, budget: float, first_error: TransientError
    ) -> ResolvedCustomer:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_random_exponential(multiplier=self._retry_base, max=self._retry_max),
            stop=stop_before_delay(budget),
            before_sleep=self._on_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number == 1:
                    raise first_error  # the call already made, so tenacity waits first
                await self._pacer.acquire()
                return await self._call_once(token, retry=True)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _call_once(self, token: str, *, retry: bool = False) -> ResolvedCustomer:
        controller = self._pacer.controller
        sent_at = controller.on_send()
        try:
            answer = await self._client.resolve_customer(RegistrationToken=token)
        except Exception as error:
            failure = classify_resolve_error(error)
            self.tally.resolved(call_result(error, failure), time.monotonic() - sent_at)
            if isinstance(error, ClientError):  # the service answered: a flow signal
                throttled = isinstance(failure, ResolveThrottled)
                controller.on_answer(sent_at, throttled=throttled, retry=retry)
            raise failure from error
        self.tally.resolved("success", time.monotonic() - sent_at)
        controller.on_answer(sent_at, throttled=False, retry=retry)
        return ResolvedCustomer(
            product_code=answer["ProductCode"],
            customer_identifier=answer.get("CustomerIdentifier") or None,
            customer_aws_account_id=answer.get("CustomerAWSAccountId") or None,
            license_arn=answer.get("LicenseArn") or None,
        )

    def _on_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        error = state.outcome.exception() if state.outcome else None
        log.info(
            "resolve_retry",
            attempt=state.attempt_number,
            wait_seconds=round(state.upcoming_sleep, 3),
            error=str(error),
        )

"""What happens to one message: parse, resolve, check, publish, then delete.

Nothing is deleted before its outcome is durable: the event is published, or the
message is in the DLQ. Any other failure leaves the message on the queue to come back.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

import structlog

from worker.dead_letter import DeadLetter, DeadLetterQueue
from worker.errors import (
    ConfigurationFault,
    DeadLetterReason,
    Rejected,
    TransientError,
)
from worker.events import ResolvedCustomer, customer_registered, token_ref, token_sha256
from worker.faults import describe
from worker.pause import Pause
from worker.publisher import Publisher
from worker.request import RegistrationRequest, parse_body
from worker.resolver import Resolver
from worker.settings import Settings
from worker.sqs import ReceivedMessage, SourceQueue

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Outcome(StrEnum):
    PUBLISHED = "published"
    DEAD_LETTERED = "dead_lettered"
    REQUEUED = "requeued"
    KEPT = "kept"  # not the message's fault: left on the queue, worker paused


@dataclass
class Tally:
    """Counts for the run summary and the tests."""

    outcomes: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)

    def count(self, outcome: Outcome, reason: DeadLetterReason | None = None) -> None:
        self.outcomes[outcome.value] += 1
        if reason is not None:
            self.dead_letters[reason.value] += 1


class MessageHandler:
    def __init__(
        self,
        settings: Settings,
        queue: SourceQueue,
        resolver: Resolver,
        publisher: Publisher,
        dead_letters: DeadLetterQueue,
        pause: Pause,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._resolver = resolver
        self._publisher = publisher
        self._dead_letters = dead_letters
        self._pause = pause
        self.tally = Tally()

    async def handle(self, message: ReceivedMessage) -> Outcome:
        with structlog.contextvars.bound_contextvars(
            message_id=message.message_id, receive_count=message.receive_count
        ):
            started = time.monotonic()
            outcome = await self._handle(message)
            log.info("message_done", outcome=outcome.value, ms=_ms_since(started))
            return outcome

    async def _handle(self, message: ReceivedMessage) -> Outcome:
        request: RegistrationRequest | None = None
        try:
            request = parse_body(message.body)
            structlog.contextvars.bind_contextvars(token=token_ref(request.token))
            customer = await self._resolver.resolve(request.token, self._settings.resolve_budget)
            self._check_product(customer)
        except Rejected as rejection:
            return await self._dead_letter(message, rejection.reason, rejection.detail, request)
        except ConfigurationFault as fault:
            return await self._keep(message, fault)
        except TransientError as error:
            return await self._retry_later(message, request, error)
        return await self._publish(message, request, customer)

    def _check_product(self, customer: ResolvedCustomer) -> None:
        allowed = self._settings.allowed_product_codes
        if allowed and customer.product_code not in allowed:
            raise Rejected(
                DeadLetterReason.PRODUCT_NOT_ALLOWED,
                f"product code {customer.product_code} is not in REGWORKER_ALLOWED_PRODUCT_CODES",
            )

    async def _publish(
        self, message: ReceivedMessage, request: RegistrationRequest, customer: ResolvedCustomer
    ) -> Outcome:
        event = customer_registered(request, customer)
        try:
            await finish(self._publisher.publish(event))
        except Exception as error:
            log.warning("publish_failed", error=describe(error), event_id=event["event_id"])
            await self._set_visibility(message, self._requeue_delay(message))
            self.tally.count(Outcome.KEPT)
            return Outcome.KEPT
        await self._delete(message)
        log.info("published", event_id=event["event_id"], product_code=customer.product_code)
        self.tally.count(Outcome.PUBLISHED)
        return Outcome.PUBLISHED

    async def _dead_letter(
        self,
        message: ReceivedMessage,
        reason: DeadLetterReason,
        detail: str,
        request: RegistrationRequest | None,
    ) -> Outcome:
        digest = token_sha256(request.token) if request else None
        try:
            await finish(self._dead_letters.send(DeadLetter(message, reason, detail, digest)))
        except Exception as error:
            # The DLQ did not take it: the message stays on the source queue, never lost.
            log.error("dead_letter_failed", reason=reason.value, error=describe(error))
            self.tally.count(Outcome.KEPT)
            return Outcome.KEPT
        await self._delete(message)
        log.warning("dead_lettered", reason=reason.value, error=detail)
        self.tally.count(Outcome.DEAD_LETTERED, reason)
        return Outcome.DEAD_LETTERED

    async def _retry_later(
        self, message: ReceivedMessage, request: RegistrationRequest | None, error: TransientError
    ) -> Outcome:
        if message.receive_count >= self._settings.max_receives:
            detail = f"still failing after {message.receive_count} deliveries: {error}"
            return await self._dead_letter(
                message, DeadLetterReason.RETRIES_EXHAUSTED, detail, request
            )
        delay = self._requeue_delay(message)
        log.info("requeued", delay_seconds=delay, error=str(error))
        await self._set_visibility(message, delay)
        self.tally.count(Outcome.REQUEUED)
        return Outcome.REQUEUED

    async def _keep(self, message: ReceivedMessage, fault: ConfigurationFault) -> Outcome:
        pause = self._settings.config_fault_pause_seconds
        log.error(
            "configuration_fault",
            error=str(fault),
            action=f"message kept on the queue; worker pauses {pause:.0f}s."
            " Check the worker's credentials, region and IAM permissions.",
        )
        self._pause.pause_for(pause)
        await self._set_visibility(message, int(pause))
        self.tally.count(Outcome.KEPT)
        return Outcome.KEPT

    def _requeue_delay(self, message: ReceivedMessage) -> int:
        base = self._settings.requeue_base_seconds
        delay = base * 2 ** max(0, message.receive_count - 1)
        return int(min(delay, self._settings.requeue_max_seconds))

    async def _delete(self, message: ReceivedMessage) -> None:
        try:
            await finish(self._queue.delete(message))
        except Exception as error:
            # Published but not deleted: it comes back and is published again with the
            # same event_id, which subscribers deduplicate on.
            log.warning("delete_failed", error=describe(error))

    async def _set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        try:
            await finish(self._queue.change_visibility(message, seconds))
        except Exception as error:
            log.warning("visibility_change_failed", error=describe(error))


async def finish(step: Awaitable[T]) -> T:
    """Run a finishing step (publish, DLQ send, delete) shielded from cancellation, so a
    shutdown cannot cut it in half: the step completes even if its caller is cancelled."""
    return await asyncio.shield(asyncio.ensure_future(step))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

"""What happens to one message: parse, resolve, check, publish, then delete.

Nothing is deleted before its outcome is durable: the event is published, or the
message is in the DLQ. Any other failure leaves the message on the queue to come back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

import structlog

from worker.dead_letter import DeadLetter, DeadLetterQueue
from worker.errors import ConfigurationFault, DeadLetterReason, Rejected, TransientError
from worker.events import (
    ResolvedCustomer,
    customer_registered,
    event_id_for,
    token_ref,
    token_sha256,
)
from worker.faults import classify_aws_error, describe
from worker.flow_control import Pacer
from worker.heartbeat import VisibilityHeartbeat
from worker.idempotency import Claim, ClaimResult, IdempotencyStore
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
    DUPLICATE = "duplicate"  # already published (idempotency table): dropped
    REQUEUED = "requeued"  # back on the queue with a longer visibility
    KEPT = "kept"  # not the message's fault: left on the queue

    @property
    def settled(self) -> bool:
        """The message is gone from the queue: its outcome is durable."""
        return self in {Outcome.PUBLISHED, Outcome.DEAD_LETTERED, Outcome.DUPLICATE}


@dataclass
class Tally:
    """Counts for the run summary and the tests."""

    outcomes: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)

    def count(self, outcome: Outcome, reason: DeadLetterReason | None = None) -> None:
        self.outcomes[outcome.value] += 1
        if reason is not None:
            self.dead_letters[reason.value] += 1


@dataclass(frozen=True)
class Collaborators:
    queue: SourceQueue
    resolver: Resolver
    pacer: Pacer
    publisher: Publisher
    dead_letters: DeadLetterQueue
    heartbeat: VisibilityHeartbeat
    pause: Pause
    idempotency: IdempotencyStore | None = None


class MessageHandler:
    def __init__(self, settings: Settings, parts: Collaborators) -> None:
        self._settings = settings
        self._parts = parts
        self.tally = Tally()
        # Messages past the pacer: those are "started" and finish on shutdown;
        # the others are handed straight back.
        self.started: set[str] = set()

    async def handle(self, message: ReceivedMessage) -> Outcome:
        with structlog.contextvars.bound_contextvars(
            message_id=message.message_id, receive_count=message.receive_count
        ):
            started = time.monotonic()
            self._parts.heartbeat.hold(message)
            try:
                outcome = await self._handle(message, started)
            finally:
                self._parts.heartbeat.release(message)
                self.started.discard(message.message_id)
                structlog.contextvars.unbind_contextvars("token")  # a lane's next message
            log.debug("message_done", outcome=outcome.value, ms=_ms_since(started))
            return outcome

    async def _handle(self, message: ReceivedMessage, picked_up: float) -> Outcome:
        request: RegistrationRequest | None = None
        claimed = False
        try:
            request = parse_body(message.body)
            structlog.contextvars.bind_contextvars(token=token_ref(request.token))
            await self._parts.pacer.acquire()
            self.started.add(message.message_id)
            claim = await self._claim(request)
            if claim.status is not Claim.CLAIMED:
                return await self._not_claimed(message, claim)
            claimed = self._parts.idempotency is not None
            customer = await self._parts.resolver.resolve(
                request.token, self._settings.resolve_budget, turn_taken=True
            )
            self._check_product(customer)
        except Rejected as rejection:
            outcome = await self._dead_letter(message, rejection, request)
        except ConfigurationFault as fault:
            outcome = await self._keep(message, fault)
        except TransientError as error:
            outcome = await self._retry_later(message, request, error)
        else:
            return await self._publish(message, request, customer, picked_up)
        if claimed and request is not None:
            await self._release(request)
        return outcome

    async def _claim(self, request: RegistrationRequest) -> ClaimResult:
        store = self._parts.idempotency
        if store is None:
            return ClaimResult(Claim.CLAIMED)
        try:
            return await store.claim(
                event_id_for(request.token), self._settings.visibility_timeout_seconds
            )
        except Exception as error:
            raise classify_aws_error(error) or error from error

    async def _not_claimed(self, message: ReceivedMessage, claim: ClaimResult) -> Outcome:
        if claim.status is Claim.DONE:
            await self._delete(message)
            log.info("duplicate_dropped")
            self.tally.count(Outcome.DUPLICATE)
            return Outcome.DUPLICATE
        # Another worker holds a live claim on the same token: look again when it ends
        # (sooner would only spend receives and hurry the redrive policy).
        await self._set_visibility(message, math.ceil(claim.lease_left) + 1)
        self.tally.count(Outcome.REQUEUED)
        return Outcome.REQUEUED

    async def _release(self, request: RegistrationRequest) -> None:
        if self._parts.idempotency is None:
            return
        try:
            await finish(self._parts.idempotency.release(event_id_for(request.token)))
        except Exception as error:  # the lease runs out by itself
            log.warning("idempotency_release_failed", error=describe(error))

    def _check_product(self, customer: ResolvedCustomer) -> None:
        allowed = self._settings.allowed_product_codes
        if allowed and customer.product_code not in allowed:
            raise Rejected(
                DeadLetterReason.PRODUCT_NOT_ALLOWED,
                f"product code {customer.product_code} is not in REGWORKER_ALLOWED_PRODUCT_CODES",
            )

    async def _publish(
        self,
        message: ReceivedMessage,
        request: RegistrationRequest,
        customer: ResolvedCustomer,
        picked_up: float,
    ) -> Outcome:
        event = customer_registered(request, customer)
        try:
            await finish(self._parts.publisher.publish(event))
        except Exception as error:
            log.warning("publish_failed", error=describe(error), event_id=event["event_id"])
            await self._release(request)
            await self._set_visibility(message, self._requeue_delay(message))
            self.tally.count(Outcome.KEPT)
            return Outcome.KEPT
        publish_ms = _ms_since(picked_up)
        await self._complete(event["event_id"])
        await self._delete(message)
        log.info(
            "published",
            event_id=event["event_id"],
            product_code=customer.product_code,
            publish_ms=publish_ms,
            ms=_ms_since(picked_up),
        )
        self.tally.count(Outcome.PUBLISHED)
        return Outcome.PUBLISHED

    async def _complete(self, event_id: str) -> None:
        if self._parts.idempotency is None:
            return
        try:
            await finish(self._parts.idempotency.complete(event_id))
        except Exception as error:
            # Published all the same; a redelivery may publish again (same event_id).
            log.warning("idempotency_complete_failed", error=describe(error))

    async def _dead_letter(
        self, message: ReceivedMessage, rejection: Rejected, request: RegistrationRequest | None
    ) -> Outcome:
        digest = token_sha256(request.token) if request else None
        letter = DeadLetter(message, rejection.reason, rejection.detail, digest)
        try:
            await finish(self._parts.dead_letters.send(letter))
        except Exception as error:
            # The DLQ did not take it: the message stays on the source queue, never lost.
            log.error("dead_letter_failed", reason=rejection.reason.value, error=describe(error))
            await self._set_visibility(message, self._requeue_delay(message))
            self.tally.count(Outcome.KEPT)
            return Outcome.KEPT
        await self._delete(message)
        log.warning("dead_lettered", reason=rejection.reason.value, error=rejection.detail)
        self.tally.count(Outcome.DEAD_LETTERED, rejection.reason)
        return Outcome.DEAD_LETTERED

    async def _retry_later(
        self, message: ReceivedMessage, request: RegistrationRequest | None, error: TransientError
    ) -> Outcome:
        if message.receive_count >= self._settings.max_receives:
            detail = f"still failing after {message.receive_count} deliveries: {error}"
            rejection = Rejected(DeadLetterReason.RETRIES_EXHAUSTED, detail)
            return await self._dead_letter(message, rejection, request)
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
            " Check the worker's credentials, region, resources and IAM permissions.",
        )
        self._parts.pause.pause_for(pause)
        await self._set_visibility(message, int(pause))
        self.tally.count(Outcome.KEPT)
        return Outcome.KEPT

    def _requeue_delay(self, message: ReceivedMessage) -> int:
        base = self._settings.requeue_base_seconds
        delay = base * 2 ** max(0, message.receive_count - 1)
        return int(min(delay, self._settings.requeue_max_seconds))

    async def _delete(self, message: ReceivedMessage) -> None:
        self._parts.heartbeat.release(message)
        try:
            await finish(self._parts.queue.delete(message))
        except Exception as error:
            # Published but not deleted: it comes back and is published again with the
            # same event_id (or dropped as a duplicate with the idempotency table).
            log.warning("delete_failed", error=describe(error))

    async def _set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        self._parts.heartbeat.release(message)
        try:
            await finish(self._parts.queue.change_visibility(message, seconds))
        except Exception as error:
            log.warning("visibility_change_failed", error=describe(error))


async def finish(step: Awaitable[T]) -> T:
    """Run a finishing step (publish, DLQ send, delete) shielded from cancellation, so a
    shutdown cannot cut it in half: the step completes even if its caller is cancelled."""
    return await asyncio.shield(asyncio.ensure_future(step))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

"""What happens to one message: parse, resolve, check, publish, then delete.

Nothing is deleted before its outcome is durable: the event is published, or the
message is in the DLQ. A failure that is not the message's own (a configuration fault,
an outage of the sink, the DLQ or the idempotency table) keeps the message in hand, at
the step that failed, for as long as the fault hold lasts (``worker.core.fault_hold``): its
receive count is not spent. Any other failure leaves it on the queue to come back.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Final, TypeVar

import structlog
from opentelemetry.trace import SpanKind

from worker.aws.sqs_wire import BatchEntryError, ReceivedMessage
from worker.core.dead_letter import DeadLetter
from worker.core.errors import (
    ApiDisabled,
    ConfigurationFault,
    DeadLetterReason,
    PublishError,
    RegworkerError,
    Rejected,
    TokenRefused,
    TransientError,
)
from worker.core.events import (
    ResolvedCustomer,
    customer_registered,
    event_id_for,
    token_ref,
    token_sha256,
)
from worker.core.fault_hold import FaultHold
from worker.core.faults import classify_aws_error, describe, describe_with_code
from worker.core.flow_control import Pacer
from worker.core.heartbeat import VisibilityHeartbeat
from worker.core.idempotency import Claim, ClaimResult
from worker.core.ports import ClaimStore, CustomerResolver, DeadLetterSink, MessageQueue
from worker.core.probes import Component
from worker.core.publisher import Publisher
from worker.core.request import RegistrationRequest, parse_body
from worker.core.resolver import ResolveThrottled
from worker.core.settings import Settings
from worker.core.tally import Outcome, Tally
from worker.core.tracing import child_span, message_span

log = structlog.get_logger(__name__)
T = TypeVar("T")

# DisabledApi for one token while the probe gets through: tries before it is the token's.
# The probe (or another call answered just after) is the arbiter each time; a second try
# a second later guards against a one-off answer, and each try costs a call of the quota.
DISABLED_API_TRIES: Final = 2
MAX_VISIBILITY_SECONDS: Final = 43_200  # SQS's cap on a visibility timeout
# Stopping, the fault hold no longer waits for SQS; the delete after a publish or a DLQ
# send still gets a few tries of its own, or the message would come back and be
# published again. Only while SQS fails fast: no try starts more than this long after
# the first failure (three at most, half a second apart), so a slow failure does not
# hold the stop past the deploy's timeout.
SHUTDOWN_DELETE_PAUSE_SECONDS: Final = 0.5
SHUTDOWN_DELETE_SECONDS: Final = 1.25


@dataclass(frozen=True)
class Collaborators:
    queue: MessageQueue
    resolver: CustomerResolver
    pacer: Pacer
    publisher: Publisher
    dead_letters: DeadLetterSink
    heartbeat: VisibilityHeartbeat
    hold: FaultHold
    idempotency: ClaimStore | None = None
    tally: Tally = field(default_factory=Tally)


class Interrupted(RegworkerError):
    """The worker stops while the message waits in hand: it goes back to the queue."""


class RetryInHand(RegworkerError):
    """A FIFO message to try again after ``delay`` seconds, without leaving the hand."""

    def __init__(self, delay: int) -> None:
        super().__init__(f"retry in {delay}s")
        self.delay = delay


@dataclass
class Work:
    """One message on its way through the handler."""

    message: ReceivedMessage
    picked_up: float
    request: RegistrationRequest | None = None
    claim_owner: str = ""  # set while this worker holds the token's idempotency claim
    retries_in_hand: int = 0
    # The owner id of every claim try for this message, so a try whose answer was lost
    # (the claim written, the reply cut off) is found to be its own by the next try.
    # Made at the first claim: without the idempotency table there is none.
    claim_id: str = ""

    @property
    def deliveries(self) -> int:
        """Tries so far: SQS's receive count, plus the FIFO retries made in hand."""
        return self.message.receive_count + self.retries_in_hand


class MessageHandler:
    def __init__(self, settings: Settings, parts: Collaborators) -> None:
        self._settings = settings
        self._parts = parts
        self.tally = parts.tally
        # Messages past the pacer: those are "started" and get the grace period on
        # shutdown; the others are handed straight back.
        self.started: set[ReceivedMessage] = set()
        # Messages whose outcome is being made durable (publish or DLQ send, the claim's
        # completion, then the delete; a duplicate's delete): shutdown never cuts those,
        # or a published token would come back. So these steps run unshielded (see
        # ``shielded``).
        self.finishing: set[ReceivedMessage] = set()

    async def handle(self, message: ReceivedMessage) -> Outcome:
        with (
            structlog.contextvars.bound_contextvars(
                message_id=message.message_id, receive_count=message.receive_count
            ),
            message_span(message) as span,
        ):
            work = Work(message, time.monotonic())
            self._parts.heartbeat.hold(message)
            try:
                outcome = await self._handle_in_hand(work)
            finally:
                self._parts.heartbeat.release(message)
                self.started.discard(message)
                self.finishing.discard(message)
                structlog.contextvars.unbind_contextvars("token")  # a lane's next message
            self.tally.message_done(time.monotonic() - work.picked_up)
            span.set_attribute("regworker.outcome", outcome.value)
            log.debug("message_done", outcome=outcome.value, ms=_ms_since(work.picked_up))
            return outcome

    async def _handle_in_hand(self, work: Work) -> Outcome:
        while True:
            try:
                return await self._handle(work)
            except RetryInHand as again:
                log.info("retry_in_hand", delay_seconds=again.delay)
                if not await self._parts.hold.sleep(again.delay):
                    return await self._give_back(work)
                work.retries_in_hand += 1

    async def _handle(self, work: Work) -> Outcome:
        try:
            request = self._parse(work)
            await self._parts.pacer.acquire()
            self.started.add(work.message)
            claim = await self._claim(work, request)
            if claim.status is not Claim.CLAIMED:
                return await self._not_claimed(work, claim)
            customer = await self._resolve(request)
            self._check_product(customer)
            return await self._publish(work, request, customer)
        except Rejected as rejection:
            return await self._dead_letter(work, rejection)
        except Interrupted:
            return await self._give_back(work)
        except (TransientError, ConfigurationFault) as error:
            return await self._retry_later(work, error)
        finally:
            await self._release(work)

    def _parse(self, work: Work) -> RegistrationRequest:
        request = work.request = parse_body(work.message.body)
        structlog.contextvars.bind_contextvars(token=token_ref(request.token))
        return request

    async def _claim(self, work: Work, request: RegistrationRequest) -> ClaimResult:
        store = self._parts.idempotency
        if store is None:
            return ClaimResult(Claim.CLAIMED)
        event_id = event_id_for(request.token)
        lease = self._settings.visibility_timeout_seconds
        owner = work.claim_id = work.claim_id or uuid.uuid4().hex
        claim = await self._held(
            Component.IDEMPOTENCY_TABLE, lambda: store.claim(event_id, lease, owner)
        )
        work.claim_owner = claim.owner
        self.tally.idempotency[claim.status.value] += 1
        return claim

    async def _not_claimed(self, work: Work, claim: ClaimResult) -> Outcome:
        if claim.status is Claim.DONE:
            await self._delete(work.message)
            log.info("duplicate_dropped")
            self.tally.count(Outcome.DUPLICATE)
            return Outcome.DUPLICATE
        # Another worker holds a live claim on the same token: look again when it ends
        # (sooner would only spend receives and hurry the redrive policy).
        wait = min(MAX_VISIBILITY_SECONDS, math.ceil(claim.lease_left) + 1)
        log.info("claim_busy", visible_again_in_seconds=wait)
        await self._set_visibility(work.message, wait)
        self.tally.count(Outcome.REQUEUED)
        return Outcome.REQUEUED

    async def _release(self, work: Work) -> None:
        store, owner = self._parts.idempotency, work.claim_owner
        if store is None or not owner or work.request is None:
            return
        work.claim_owner = ""
        try:
            await shielded(store.release(event_id_for(work.request.token), owner))
        except Exception as error:  # the lease runs out by itself
            self.tally.call_failures[Component.IDEMPOTENCY_TABLE.value] += 1
            log.warning("idempotency_release_failed", error=describe(error))
            return
        self.tally.idempotency["released"] += 1

    async def _resolve(self, request: RegistrationRequest) -> ResolvedCustomer:
        turn_taken = True  # the first call's turn was taken before the claim

        async def call() -> ResolvedCustomer:
            nonlocal turn_taken
            taken, turn_taken = turn_taken, False
            try:
                return await self._parts.resolver.resolve(
                    request.token, self._settings.resolve_budget, turn_taken=taken
                )
            except TokenRefused:
                # An answer about the token: the API works, as a probe would have shown.
                self._parts.hold.worked(Component.RESOLVE_CUSTOMER)
                raise

        try:
            with child_span("ResolveCustomer", SpanKind.CLIENT):
                return await self._held(
                    Component.RESOLVE_CUSTOMER, call, on=(ConfigurationFault, TransientError)
                )
        except ApiDisabled as refused:  # the API works for others: this token alone is refused
            raise Rejected(DeadLetterReason.DISABLED_API, str(refused)) from refused

    async def _held(
        self,
        component: Component,
        step: Callable[[], Awaitable[T]],
        *,
        on: type[Exception] | tuple[type[Exception], ...] = Exception,
    ) -> T:
        """Run ``step``; while it fails for a fault that is not the message's own, keep
        the message in hand under the fault hold and run it again when the fault clears.
        A failure that may be the message's own (an entry refused for itself, a token's
        resolve that kept failing, ``DisabledApi``) is put to the component's probe
        first (spared when another message's call gets through just after): if it gets
        through, the dependency works for others, and after ``own_tries`` the message
        takes its own path. Raises ``Interrupted`` when the
        worker stops while the message waits."""
        hold = self._parts.hold
        own = held = 0  # failures judged the message's own; failures held for
        while True:
            try:
                with hold.calling(component):
                    result = await step()
            except on as error:
                if not is_dependency_failure(error) or isinstance(error, ResolveThrottled):
                    raise
                self.tally.call_failures[component.value] += 1
                if may_be_its_own(error) and await hold.probe_passes(
                    component, failed_at=time.monotonic()
                ):
                    own += 1
                    if own >= own_tries(error):
                        raise
                    waited = await hold.sleep(self._backoff(own))
                else:
                    held += 1
                    hold.report(component, error)
                    # After the hold cleared, this call failing again: back off in hand.
                    self.tally.held += 1
                    try:
                        waited = await (
                            hold.wait_clear() if held == 1 else hold.sleep(self._backoff(held))
                        )
                    finally:
                        self.tally.held -= 1
                if not waited:
                    raise Interrupted(component.value) from error
                continue
            hold.worked(component)
            if own or held or hold.holds_for(component):
                hold.succeeded(component)
            return result

    def _backoff(self, failures: int) -> float:
        return float(min(self._settings.fault_probe_max_seconds, 2 ** min(failures - 1, 10)))

    def _check_product(self, customer: ResolvedCustomer) -> None:
        allowed = self._settings.allowed_product_codes
        if allowed and customer.product_code not in allowed:
            raise Rejected(
                DeadLetterReason.PRODUCT_NOT_ALLOWED,
                f"product code {customer.product_code} is not in REGWORKER_ALLOWED_PRODUCT_CODES",
            )

    async def _publish(
        self, work: Work, request: RegistrationRequest, customer: ResolvedCustomer
    ) -> Outcome:
        event = customer_registered(request, customer)
        self.finishing.add(work.message)
        try:
            with child_span("publish", SpanKind.PRODUCER):
                publish = self._parts.publisher.publish
                await self._held(Component.SINK, lambda: publish(event))
        except Interrupted:
            raise
        except Exception as error:  # refused for itself while the sink works for others
            log.warning("publish_failed", error=describe(error), event_id=event["event_id"])
            self.finishing.discard(work.message)
            await self._release(work)
            return await self._retry_later(work, TransientError(describe(error)))
        publish_ms = _ms_since(work.picked_up)
        await self._complete(work, event["event_id"])
        await self._delete(work.message)
        log.info(
            "published",
            event_id=event["event_id"],
            product_code=customer.product_code,
            publish_ms=publish_ms,
            ms=_ms_since(work.picked_up),
        )
        self.tally.count(Outcome.PUBLISHED)
        return Outcome.PUBLISHED

    async def _complete(self, work: Work, event_id: str) -> None:
        store, owner = self._parts.idempotency, work.claim_owner
        if store is None or not owner:
            return
        work.claim_owner = ""  # published: never released, whatever happens next
        try:
            await self._held(Component.IDEMPOTENCY_TABLE, lambda: store.complete(event_id, owner))
        except Exception as error:
            # Published all the same; a redelivery may publish again (same event_id).
            log.warning("idempotency_complete_failed", error=describe(error))
            return
        self.tally.idempotency["completed"] += 1

    async def _dead_letter(self, work: Work, rejection: Rejected) -> Outcome:
        request = work.request
        digest = token_sha256(request.token) if request else None
        letter = DeadLetter(work.message, rejection.reason, rejection.detail, digest)
        self.finishing.add(work.message)
        try:
            with child_span("dead_letter", SpanKind.PRODUCER):
                send = self._parts.dead_letters.send
                await self._held(Component.DEAD_LETTER_QUEUE, lambda: send(letter))
        except Interrupted:
            return await self._give_back(work)
        except Exception as error:
            # The DLQ did not take it: the message stays on the source queue, never lost.
            log.error("dead_letter_failed", reason=rejection.reason.value, error=describe(error))
            await self._set_visibility(work.message, self._requeue_delay(work))
            self.tally.count(Outcome.KEPT)
            return Outcome.KEPT
        await self._delete(work.message)
        log.warning("dead_lettered", reason=rejection.reason.value, error=rejection.detail)
        self.tally.count(Outcome.DEAD_LETTERED, rejection.reason.value)
        return Outcome.DEAD_LETTERED

    async def _retry_later(self, work: Work, error: Exception) -> Outcome:
        if work.deliveries >= self._settings.max_receives:
            detail = f"still failing after {work.deliveries} deliveries: {error}"
            rejection = Rejected(DeadLetterReason.RETRIES_EXHAUSTED, detail)
            return await self._dead_letter(work, rejection)
        delay = self._requeue_delay(work)
        if self._settings.is_fifo:
            # Its group waits behind it whatever happens; handed back, it would come
            # again with the messages behind it, spending their receive counts too.
            await self._release(work)
            raise RetryInHand(delay)
        log.info("requeued", delay_seconds=delay, error=str(error))
        await self._set_visibility(work.message, delay)
        self.tally.count(Outcome.REQUEUED)
        return Outcome.REQUEUED

    async def _give_back(self, work: Work) -> Outcome:
        """Shutdown while the message waited in hand: visible again at once, for a worker
        that is not stopping."""
        await self._set_visibility(work.message, 0)
        self.tally.count(Outcome.KEPT)
        return Outcome.KEPT

    def _requeue_delay(self, work: Work) -> int:
        base = self._settings.requeue_base_seconds
        delay = base * 2 ** max(0, min(work.deliveries - 1, 30))
        return int(min(delay, self._settings.requeue_max_seconds, MAX_VISIBILITY_SECONDS))

    async def _delete(self, message: ReceivedMessage) -> None:
        self.finishing.add(message)
        receipt = None
        with self._parts.heartbeat.settling(message):
            # Delivered again meanwhile: SQS deletes only with the latest receipt.
            while receipt != message.receipt_handle:
                receipt = message.receipt_handle
                try:
                    await self._delete_delivery(replace(message, receipt_handle=receipt))
                except Exception as error:
                    if message.receipt_handle == receipt:
                        # Published but not deleted: it comes back and is published
                        # again with the same event_id (or dropped as a duplicate with
                        # the idempotency table).
                        cause = error.__cause__ if isinstance(error, Interrupted) else None
                        log.warning("delete_failed", error=describe_with_code(cause or error))

    async def _delete_delivery(self, delivery: ReceivedMessage) -> None:
        queue = self._parts.queue
        first_failure: float | None = None
        while True:
            try:
                await self._held(Component.SOURCE_QUEUE, lambda: queue.delete(delivery))
                return
            except Interrupted as stopped:
                now = time.monotonic()
                first_failure = first_failure or now
                next_try_after = now + SHUTDOWN_DELETE_PAUSE_SECONDS - first_failure
                cause = stopped.__cause__
                if next_try_after > SHUTDOWN_DELETE_SECONDS or (
                    cause is not None and may_be_its_own(cause)  # a refused receipt
                ):
                    raise
                await asyncio.sleep(SHUTDOWN_DELETE_PAUSE_SECONDS)

    async def _set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        # Out of hand at once: a delivery after this change (at once, for 0 s) is the
        # next try of the message, not a copy to adopt.
        self._parts.heartbeat.release(message)
        try:
            await shielded(self._parts.queue.change_visibility(message, seconds))
        except Exception as error:
            self.tally.call_failures[Component.SOURCE_QUEUE.value] += 1
            log.warning("visibility_change_failed", error=describe(error))


def may_be_its_own(error: BaseException) -> bool:
    """A failure the probe must judge: the dependency may work for everyone else."""
    if isinstance(error, PublishError | BatchEntryError):
        return error.sender_fault
    if isinstance(error, ConfigurationFault):
        return isinstance(error, ApiDisabled)
    return isinstance(error, TransientError)  # a token's resolve that kept failing


def own_tries(error: BaseException) -> int:
    """Tries before a failure the probe does not share is the message's own."""
    return DISABLED_API_TRIES if isinstance(error, ApiDisabled) else 1


def is_dependency_failure(error: BaseException) -> bool:
    """A failure of the call, not of the message: AWS errors, our wrappers of them."""
    if isinstance(error, TransientError | ConfigurationFault | BatchEntryError):
        return True
    return classify_aws_error(error) is not None


async def shielded(step: Awaitable[T]) -> T:
    """Run ``step`` to its end even if its caller is cancelled: a visibility change or a
    claim release made in a lane that the shutdown's drain may cancel. (A publish, a DLQ
    send, the claim's completion, a delete run while the message is in ``finishing``,
    whose lanes the drain never cancels: they need no shield, and it cost two tasks a
    message.)"""
    return await asyncio.shield(step)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

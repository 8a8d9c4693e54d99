"""What the handler and the receive loop need from their collaborators, as protocols.

``worker.core.service`` plugs in the AWS-backed classes (``SourceQueue``, ``Resolver``,
``DeadLetterQueue``, ``IdempotencyStore``); the in-process tests plug in fakes of these
same interfaces (tests/core/fakes.py). ``Publisher`` lives beside its implementations in
``worker.core.publisher``.
"""

from __future__ import annotations

from typing import Protocol

from worker.aws.sqs_wire import ReceivedMessage
from worker.core.dead_letter import DeadLetter
from worker.core.events import ResolvedCustomer
from worker.core.idempotency import ClaimResult


class MessageQueue(Protocol):
    """The source queue: receive, delete, change visibility, read the depth."""

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]: ...

    async def delete(self, message: ReceivedMessage) -> None: ...

    async def change_visibility(self, message: ReceivedMessage, seconds: int) -> None: ...

    async def approximate_depth(self) -> int: ...


class CustomerResolver(Protocol):
    """ResolveCustomer for one token, retried in place within ``budget`` seconds.
    Raises ``Rejected``, ``ConfigurationFault`` (``ApiDisabled`` among them) or
    ``TransientError`` (``ResolveThrottled`` among them)."""

    @property
    def retries(self) -> int: ...

    async def resolve(
        self, token: str, budget: float, *, turn_taken: bool = False
    ) -> ResolvedCustomer: ...


class DeadLetterSink(Protocol):
    """Where poison messages go, with their reason."""

    async def send(self, letter: DeadLetter) -> None: ...

    async def close(self) -> None: ...


class ClaimStore(Protocol):
    """The idempotency table: one claim per ``event_id``, leases renewed by ``run``."""

    async def claim(
        self, event_id: str, lease_seconds: float, owner: str | None = None
    ) -> ClaimResult: ...

    async def complete(self, event_id: str, owner: str) -> None: ...

    async def release(self, event_id: str, owner: str) -> None: ...

    async def run(self, interval: float) -> None: ...

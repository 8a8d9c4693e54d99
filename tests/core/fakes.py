"""In-memory fakes of the worker's own interfaces (``worker.core.ports``, ``Publisher``
and the fault hold's probes), for driving ``MessageHandler`` and ``Consumer`` in-process.

Each fake keeps real state and answers from it: the queue hands out, hides, deletes
and redelivers messages (receive counts included); the resolver knows the tokens it was
told about and refuses the others as AWS does (``InvalidTokenException``); the claim
store applies the idempotency table's conditions. Failures are scripted per test with
``Trouble``, and raise what the real classes let through (our errors, botocore's).
No AWS client is faked or mocked here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from worker.aws.sqs_wire import BatchEntryError, ReceivedMessage
from worker.core.dead_letter import DeadLetter, OutgoingLetter
from worker.core.errors import DeadLetterReason, TokenRefused
from worker.core.events import ResolvedCustomer
from worker.core.idempotency import CLOCK_SKEW_SECONDS, Claim, ClaimResult
from worker.core.publisher import Event

PRODUCT = "fakeproduct000000000000001"
# An empty queue's long poll: short, so a drained run ends quickly.
LONGEST_POLL_SECONDS = 0.05


class Trouble:
    """Scripted failures of one dependency.

    - ``down``: every call and every probe fails with it (for ``down_calls`` calls and
      probes together, or until ``repair``): an outage or a configuration fault.
    - ``refuse``: every call fails with it, the probe passes: the dependency works for
      the others (a policy allowing the probe's call but not this one).
    - ``refuse_next``: the next calls fail with these, one each; the probe passes.
    """

    def __init__(self) -> None:
        self.down: BaseException | None = None
        self.down_calls: int | None = None
        self.refuse: BaseException | None = None
        self.refuse_next: list[BaseException] = []
        self.calls = 0
        self.probes = 0

    def break_with(self, error: BaseException, *, calls: int | None = None) -> None:
        self.down, self.down_calls = error, calls

    def repair(self) -> None:
        self.down = self.down_calls = None

    def call(self) -> None:
        self.calls += 1
        self._when_down()
        if self.refuse_next:
            raise self.refuse_next.pop(0)
        if self.refuse is not None:
            raise self.refuse

    async def probe(self) -> None:
        self.probes += 1
        self._when_down()

    def _when_down(self) -> None:
        if self.down is None:
            return
        error = self.down
        if self.down_calls is not None:
            self.down_calls -= 1
            if self.down_calls <= 0:
                self.repair()
        raise error


@dataclass
class Stored:
    """A message on the fake queue, as SQS keeps it."""

    message_id: str
    body: str
    group_id: str | None
    attributes: dict[str, Any]
    sent: int  # send order, for FIFO
    receive_count: int = 0
    receipt_handle: str = ""
    visible_at: float = 0.0
    deleted: bool = False


class FakeQueue:
    """The source queue. Visibility is real time (``time.monotonic``): a visibility
    change of 0 makes a message visible at once. FIFO: a group with a message in flight
    gives out nothing more, and a group's messages come out in the order sent."""

    def __init__(self, *, fifo: bool = False) -> None:
        self.fifo = fifo
        self.trouble = Trouble()  # receive
        self.delete_trouble = Trouble()
        self.stored: dict[str, Stored] = {}
        self.visibility_changes: list[tuple[str, int]] = []  # (body, seconds)
        self.receives = 0
        self.most_in_flight = 0

    def send(self, body: str, *, group: str | None = None, **attributes: str) -> str:
        message_id = str(uuid.uuid4())
        values = {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}
        self.stored[message_id] = Stored(message_id, body, group, values, len(self.stored))
        return message_id

    def send_all(self, bodies: Iterable[str], *, group: str | None = None) -> None:
        for body in bodies:
            self.send(body, group=group)

    @property
    def in_flight(self) -> int:
        """Received and neither deleted nor visible again: SQS's NotVisible count."""
        now = time.monotonic()
        return sum(1 for m in self._live() if m.receive_count and m.visible_at > now)

    def left(self) -> list[Stored]:
        """The messages not deleted."""
        return list(self._live())

    def invisible(self) -> list[str]:
        """The messages not deleted that nobody can receive now."""
        now = time.monotonic()
        return [stored.body for stored in self._live() if stored.visible_at > now]

    def time_passes(self) -> None:
        """Every delay and visibility timeout runs out: all that is left is visible."""
        for stored in self._live():
            stored.visible_at = 0.0

    def handed_back(self, seconds: int = 0) -> list[str]:
        return [body for body, timeout in self.visibility_changes if timeout == seconds]

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        self.receives += 1
        self.trouble.call()
        deadline = time.monotonic() + min(wait_seconds, LONGEST_POLL_SECONDS)
        while True:
            batch = self._take(max(1, min(10, max_messages)), visibility_timeout)
            if batch or time.monotonic() >= deadline:
                return batch
            await asyncio.sleep(0.005)

    async def delete(self, message: ReceivedMessage) -> None:
        self.delete_trouble.call()
        self._current(message).deleted = True

    async def change_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        stored = self._current(message)
        stored.visible_at = time.monotonic() + seconds
        self.visibility_changes.append((stored.body, seconds))

    async def approximate_depth(self) -> int:
        return len(self.left())

    async def probe(self) -> None:
        await self.trouble.probe()

    def _live(self) -> Iterable[Stored]:
        return (m for m in self.stored.values() if not m.deleted)

    def _take(self, count: int, visibility_timeout: int) -> list[ReceivedMessage]:
        now = time.monotonic()
        busy_groups = {m.group_id for m in self._live() if m.receive_count and m.visible_at > now}
        taken: list[ReceivedMessage] = []
        for stored in sorted(self._live(), key=lambda m: m.sent):
            if len(taken) >= count:
                break
            if stored.visible_at > now or (self.fifo and stored.group_id in busy_groups):
                continue
            stored.receive_count += 1
            stored.receipt_handle = uuid.uuid4().hex
            stored.visible_at = now + visibility_timeout
            taken.append(self._as_received(stored))
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        return taken

    def _as_received(self, stored: Stored) -> ReceivedMessage:
        return ReceivedMessage(
            message_id=stored.message_id,
            receipt_handle=stored.receipt_handle,
            body=stored.body,
            receive_count=stored.receive_count,
            group_id=stored.group_id,
            attributes=dict(stored.attributes),
        )

    def _current(self, message: ReceivedMessage) -> Stored:
        """The stored message, if this receipt handle is still its own (as SQS checks)."""
        stored = self.stored.get(message.message_id)
        if stored is None or stored.deleted or stored.receipt_handle != message.receipt_handle:
            raise BatchEntryError("ReceiptHandleIsInvalid", "not the current receipt", True)
        return stored


class FakeResolver:
    """ResolveCustomer for the tokens it was told about (``knows``); any other token is
    refused as AWS refuses a token it never issued. ``fails`` scripts a token's own
    failures; ``trouble`` fails every call (and the probe, while ``down``)."""

    def __init__(self) -> None:
        self.customers: dict[str, ResolvedCustomer] = {}
        self.scripted: dict[str, list[BaseException]] = {}
        self.always: dict[str, BaseException] = {}
        self.trouble = Trouble()
        self.calls: list[str] = []
        self.delay = 0.0
        self.gate: asyncio.Event | None = None
        self.active = 0
        self.most_active = 0
        self.retries = 0  # in-place retries are the real Resolver's; none here

    def knows(self, *tokens: str, product_code: str = PRODUCT) -> None:
        for token in tokens:
            self.customers[token] = ResolvedCustomer(
                product_code=product_code,
                customer_aws_account_id="123456789012",
                license_arn=f"arn:aws:license-manager::000000000000:license:l-{token[-8:]}",
            )

    def fails(self, token: str, *errors: BaseException, then: BaseException | None = None) -> None:
        """``token``'s next calls fail with ``errors``; after them, with ``then`` for good."""
        self.scripted[token] = list(errors)
        if then is not None:
            self.always[token] = then

    async def resolve(
        self, token: str, budget: float, *, turn_taken: bool = False
    ) -> ResolvedCustomer:
        self.calls.append(token)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            return self._answer(token)
        finally:
            self.active -= 1

    async def probe(self) -> None:
        await self.trouble.probe()

    def _answer(self, token: str) -> ResolvedCustomer:
        self.trouble.call()
        if script := self.scripted.get(token):
            raise script.pop(0)
        if token in self.always:
            raise self.always[token]
        if token not in self.customers:
            raise TokenRefused(
                DeadLetterReason.INVALID_TOKEN, "InvalidTokenException: the token is not valid"
            )
        return self.customers[token]


class FakePublisher:
    """The sink. ``sending`` is set when a publish starts; ``delay`` makes it slow."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.trouble = Trouble()
        self.delay = 0.0
        self.sending = asyncio.Event()
        self.closed = False

    async def publish(self, event: Event) -> None:
        self.sending.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.trouble.call()
        self.events.append(event)

    async def close(self) -> None:
        self.closed = True

    async def probe(self) -> None:
        await self.trouble.probe()

    def event_ids(self) -> list[str]:
        return [event["event_id"] for event in self.events]


class FakeDeadLetters:
    """The DLQ: keeps each letter as it would be sent (``OutgoingLetter``)."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.trouble = Trouble()
        self.delay = 0.0
        self.sending = asyncio.Event()

    async def send(self, letter: DeadLetter) -> None:
        self.sending.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.trouble.call()
        self.letters.append(letter)

    async def close(self) -> None:
        return None

    async def probe(self) -> None:
        await self.trouble.probe()

    def documents(self) -> list[dict[str, Any]]:
        """Each letter as schemas/dead-letter.schema.json describes a DLQ message."""
        documents = []
        for letter in self.letters:
            outgoing = OutgoingLetter.of(letter)
            attributes = {
                name: value["StringValue"]
                for name, value in outgoing.attributes.items()
                if "StringValue" in value
            }
            documents.append({"body": outgoing.body, "attributes": attributes})
        return documents

    def reasons(self) -> dict[str, str]:
        return {letter.message.body: letter.reason.value for letter in self.letters}


@dataclass
class Record:
    status: str
    owner: str
    lease_until: float  # time.monotonic()


@dataclass
class FakeClaimStore:
    """The idempotency table's conditions, in memory (``IdempotencyStore``'s contract)."""

    records: dict[str, Record] = field(default_factory=dict)
    trouble: Trouble = field(default_factory=Trouble)
    completed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    async def claim(
        self, event_id: str, lease_seconds: float, owner: str | None = None
    ) -> ClaimResult:
        self.trouble.call()
        now = time.monotonic()
        owner = owner or uuid.uuid4().hex
        record = self.records.get(event_id)
        if record is not None and record.status == "COMPLETE":
            return ClaimResult(Claim.DONE)
        expired = record is None or record.lease_until + CLOCK_SKEW_SECONDS < now
        if record is not None and not expired and record.owner != owner:
            return ClaimResult(Claim.BUSY, record.lease_until + CLOCK_SKEW_SECONDS - now)
        self.records[event_id] = Record("IN_PROGRESS", owner, now + lease_seconds)
        return ClaimResult(Claim.CLAIMED, owner=owner)

    async def complete(self, event_id: str, owner: str) -> None:
        record = self.records.get(event_id)
        if record is not None and record.owner == owner:
            record.status = "COMPLETE"
            self.completed.append(event_id)

    async def release(self, event_id: str, owner: str) -> None:
        record = self.records.get(event_id)
        if record is not None and record.owner == owner and record.status == "IN_PROGRESS":
            del self.records[event_id]
            self.released.append(event_id)

    async def run(self, interval: float) -> None:
        await asyncio.Event().wait()  # leases here never run out while in hand

    async def probe(self) -> None:
        await self.trouble.probe()

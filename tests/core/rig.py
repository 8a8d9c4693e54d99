"""One worker assembled from the fakes (tests/core/fakes.py), as ``run_worker`` assembles
it from AWS clients, and small helpers for driving it in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from tests.core.fakes import FakeClaimStore, FakeDeadLetters, FakePublisher, FakeQueue, FakeResolver
from worker.aws.sqs_wire import ReceivedMessage
from worker.core.consumer import Consumer
from worker.core.fault_hold import FaultHold
from worker.core.flow_control import FlowController, Pacer
from worker.core.handler import Collaborators, MessageHandler
from worker.core.heartbeat import VisibilityHeartbeat
from worker.core.metrics import Watched
from worker.core.probes import Component, Probe
from worker.core.settings import Settings
from worker.core.tally import Outcome, Tally

QUEUE_URL = "http://127.0.0.1:1/000000000000/registrations"
DLQ_URL = "http://127.0.0.1:1/000000000000/registrations-dlq"


def fake_settings(*, fifo: bool = False, **overrides: Any) -> Settings:
    """Settings as the end-to-end tests use them (short budgets, three deliveries)."""
    suffix = ".fifo" if fifo else ""
    values: dict[str, Any] = {
        "queue_url": QUEUE_URL + suffix,
        "dlq_url": DLQ_URL + suffix,
        "max_receives": 3,
        "wait_time_seconds": 1,
        "visibility_timeout_seconds": 10,
        "resolve_budget_seconds": 1.5,
        "requeue_base_seconds": 1,
        "requeue_max_seconds": 2,
        "resolve_rate_limit": 1000.0,
        "resolve_start_rate": 1000.0,
        "shutdown_grace_seconds": 5,
        "fault_probe_max_seconds": 1,
        "http_port": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Rig:
    """One worker assembled as ``run_worker`` assembles it, from fakes."""

    settings: Settings
    queue: FakeQueue
    resolver: FakeResolver
    publisher: FakePublisher
    dead_letters: FakeDeadLetters
    claims: FakeClaimStore | None
    hold: FaultHold
    heartbeat: VisibilityHeartbeat
    pacer: Pacer
    handler: MessageHandler

    @classmethod
    def build(
        cls,
        settings: Settings | None = None,
        *,
        queue: FakeQueue | None = None,
        claims: FakeClaimStore | None = None,
        publisher: FakePublisher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Rig:
        settings = settings or fake_settings()
        queue = queue or FakeQueue(fifo=settings.is_fifo)
        resolver, dead_letters = FakeResolver(), FakeDeadLetters()
        publisher = publisher or FakePublisher()
        probes: dict[Component, Probe] = {
            Component.SOURCE_QUEUE: queue.probe,
            Component.DEAD_LETTER_QUEUE: dead_letters.probe,
            Component.SINK: publisher.probe,
            Component.RESOLVE_CUSTOMER: resolver.probe,
        }
        if claims is not None:
            probes[Component.IDEMPOTENCY_TABLE] = claims.probe
        hold = FaultHold(probes, max_wait=settings.fault_probe_max_seconds)
        heartbeat = VisibilityHeartbeat(queue, settings.visibility_timeout_seconds, clock)
        pacer = Pacer(
            FlowController(settings.resolve_rate_limit, start_rate=settings.resolve_start_rate)
        )
        parts = Collaborators(
            queue=queue,
            resolver=resolver,
            pacer=pacer,
            publisher=publisher,
            dead_letters=dead_letters,
            heartbeat=heartbeat,
            hold=hold,
            idempotency=claims,
        )
        handler = MessageHandler(settings, parts)
        return cls(
            settings,
            queue,
            resolver,
            publisher,
            dead_letters,
            claims,
            hold,
            heartbeat,
            pacer,
            handler,
        )

    def consumer(self) -> Consumer:
        return Consumer(
            self.settings, self.queue, self.handler, self.heartbeat, self.hold, self.pacer
        )

    async def run(self, stop: asyncio.Event | None = None, *, until_empty: bool = False) -> Tally:
        """The receive loop until ``stop`` (or drained), as ``run_worker`` runs it."""
        try:
            await self.consumer().run(stop or asyncio.Event(), until_empty=until_empty)
        finally:
            await self.hold.close()
        return self.handler.tally

    async def receive_one(self) -> ReceivedMessage:
        [message] = await self.queue.receive(1, 1, self.settings.visibility_timeout_seconds)
        return message

    async def handle_next(self) -> Outcome:
        """Receive one message and handle it, without the receive loop."""
        return await self.handler.handle(await self.receive_one())


def watched(tally: Tally) -> Watched:
    """What the metrics and the progress line read, around ``tally``, from fakes."""
    return Watched(
        tally,
        VisibilityHeartbeat(FakeQueue(), 60),
        FaultHold(probes={}, max_wait=30),
        FlowController(20, start_rate=10),
    )


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, checked every 2 ms, for at most 5 s."""
    for _ in range(2500):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("the condition never held")


def when_held(
    hold: FaultHold, component: Component, then: Callable[[], object]
) -> asyncio.Task[None]:
    """Call ``then`` once the hold holds for ``component`` (repair it, stop the worker)."""

    async def watch() -> None:
        await eventually(lambda: hold.holds_for(component))
        then()

    return asyncio.create_task(watch(), name=f"when-held-{component.value}")


def held(logs: Iterable[MutableMapping[str, Any]]) -> list[tuple[str, str]]:
    """The fault hold's log lines, as (event, component)."""
    return [(entry["event"], entry["component"]) for entry in logs if "component" in entry]

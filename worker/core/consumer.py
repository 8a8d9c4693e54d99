"""The receive loop: several long polls in flight, continuous refill, bounded.

Receivers ask for only as many messages as there are free slots, so the worker never
holds more than ``max_in_flight`` messages, and each message starts as soon as it
arrives: there is no batch-at-a-time stall behind a slow message. Nor more than the
flow controller's current rate can start within ``INTAKE_HORIZON_SECONDS``: a message
held while it waits for its turn is invisible to every other worker.

Messages run in lanes. On a standard queue every message is a lane of its own. On a
FIFO queue the messages of one group in a receive batch form one lane, handled in
order; the first one that does not settle stops its lane and the rest of that group
goes back to the queue, so a failure holds back only its own group.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import structlog

from worker.aws.sqs_wire import MAX_BATCH, ReceivedMessage
from worker.core.errors import ConfigurationFault, RegworkerError
from worker.core.fault_hold import FaultHold
from worker.core.faults import classify_aws_error, describe, describe_with_code
from worker.core.flow_control import Pacer
from worker.core.handler import MessageHandler
from worker.core.health import Health
from worker.core.heartbeat import VisibilityHeartbeat
from worker.core.ports import MessageQueue
from worker.core.probes import Component
from worker.core.settings import Settings
from worker.core.tally import Outcome

log = structlog.get_logger(__name__)

# A failed receive is retried at most this long after: one cheap call per receiver every
# 10 s costs nothing during an SQS outage, and work resumes within 10 s of its end
# (30 s made the outage run's first publish come 29 s after SQS was back).
RECEIVE_BACKOFF_MAX = 10.0
# A receive answers in milliseconds when messages are waiting, so two seconds of starts
# in hand keep the pacer fed; holding more only hides messages from other workers.
INTAKE_HORIZON_SECONDS = 2.0
# With --until-empty an empty queue ends the run, so a long poll of 20 s would only add
# 20 s to every batch job: receives wait at most this long (they still answer at once
# when messages are there).
UNTIL_EMPTY_WAIT_SECONDS = 1
DRAINED_CHECK_SECONDS = 0.2
INTAKE_RECHECK_SECONDS = 0.05
# A receive waits for at most a fifth of the slots to be free (see Slots.take_up_to).
RECEIVE_FILL_DIVISOR = 5


class ReceiveLoopDied(RegworkerError):
    """Polling stopped on an unexpected error; the process must exit non-zero."""


class Slots:
    """A counting limit that hands out up to n slots at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._freed = asyncio.Event()
        self._closed = False

    async def take_up_to(self, wanted: int, *, fill: int = 1) -> int:
        """Up to ``wanted`` slots, once ``fill`` of them are free (never more than a fifth
        of the limit, so a wait always ends as messages finish); none once closed. A
        receive of one message costs as much as a receive of ten, and the slots in use
        keep the pipeline busy meanwhile."""
        least = max(1, min(fill, wanted, self.limit // RECEIVE_FILL_DIVISOR))
        while not self._closed and self.limit - self.in_use < least:
            self._freed.clear()
            await self._freed.wait()
        if self._closed:
            return 0
        taken = min(wanted, self.limit - self.in_use)
        self.in_use += taken
        return taken

    def give_back(self, count: int) -> None:
        self.in_use -= count
        self._freed.set()

    def close(self) -> None:
        self._closed = True
        self._freed.set()


@dataclass
class Lane:
    messages: list[ReceivedMessage]
    position: int = 0
    open: bool = True  # its task still takes messages (FIFO: a group's followers join)

    @property
    def group_id(self) -> str | None:
        return self.messages[0].group_id

    @property
    def current(self) -> ReceivedMessage | None:
        return self.messages[self.position] if self.position < len(self.messages) else None

    def remaining(self) -> list[ReceivedMessage]:
        return self.messages[self.position :]


def lanes_of(messages: list[ReceivedMessage], fifo: bool) -> list[Lane]:
    if not fifo:
        return [Lane([message]) for message in messages]
    groups: dict[str | None, list[ReceivedMessage]] = {}
    for message in messages:
        groups.setdefault(message.group_id, []).append(message)
    return [Lane(group) for group in groups.values()]


class Consumer:
    def __init__(
        self,
        settings: Settings,
        queue: MessageQueue,
        handler: MessageHandler,
        heartbeat: VisibilityHeartbeat,
        hold: FaultHold,
        pacer: Pacer,
        health: Health | None = None,
    ) -> None:
        self._settings = settings
        self._health = health if health is not None else Health(settings.liveness_seconds)
        self._tally = handler.tally
        self._pacer = pacer
        self._queue = queue
        self._handler = handler
        self._heartbeat = heartbeat
        self._hold = hold
        self._polling = 0
        self._slots = Slots(settings.max_in_flight)
        self._lanes: dict[asyncio.Task[None], Lane] = {}
        self._copy_deletes: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._empty_polls = 0
        self._wait_seconds = settings.wait_time_seconds

    async def run(self, stop: asyncio.Event, *, until_empty: bool = False) -> None:
        """Consume until ``stop`` is set (or, with ``until_empty``, the queue is drained)."""
        if until_empty:
            self._wait_seconds = min(self._wait_seconds, UNTIL_EMPTY_WAIT_SECONDS)
        receivers = [
            asyncio.create_task(self._receive_loop(), name=f"receiver-{n}")
            for n in range(self._settings.receive_concurrency)
        ]
        watchers: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait(), name="stop")]
        if until_empty:
            watchers.append(asyncio.create_task(self._stop_when_drained(), name="drained"))
        heartbeat = asyncio.create_task(self._heartbeat.run(), name="heartbeat")
        done, _ = await asyncio.wait([*receivers, *watchers], return_when=asyncio.FIRST_COMPLETED)
        self._stopping.set()
        self._health.stopping()
        self._hold.stop()
        self._slots.close()
        stop.set()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await asyncio.gather(self._finish_receivers(receivers), self._drain())
        await asyncio.gather(*self._copy_deletes, return_exceptions=True)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        for task in done:
            if task in receivers and not task.cancelled() and task.exception() is not None:
                raise ReceiveLoopDied(f"receive loop died: {task.exception()!r}")

    async def _finish_receivers(self, receivers: list[asyncio.Task[None]]) -> None:
        """A long poll cut off mid-flight still takes messages off the queue on the
        server's side, and nobody reads them: they would stay invisible for the whole
        visibility timeout. So polls in flight are let finish (at most the wait time)
        and what they bring is handed back at once."""
        _, late = await asyncio.wait(receivers, timeout=self._wait_seconds + 5)
        for task in late:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)

    async def _receive_loop(self) -> None:
        failures = refusals = 0
        while not self._stopping.is_set():
            if not await self._hold.wait_clear():
                return
            wanted = await self._take_intake()
            if self._stopping.is_set():
                self._slots.give_back(wanted)
                return
            try:
                messages = await self._poll(wanted)
            except Exception as error:
                self._tally.call_failures[Component.SOURCE_QUEUE.value] += 1
                self._slots.give_back(wanted)
                classified = classify_aws_error(error)
                if classified is None:
                    raise
                if isinstance(classified, ConfigurationFault):
                    refusals += 1
                    self._hold.report(Component.SOURCE_QUEUE, error)
                    if refusals > 1:  # the probe got through, the receive did not: back off
                        cap = self._settings.fault_probe_max_seconds
                        await self._hold.sleep(min(cap, 2.0 ** min(refusals - 2, 10)))
                    continue
                failures += 1
                await self._back_off(failures, error)
                continue
            self._health.progressed()
            self._tally.received += len(messages)
            if failures:
                log.info("receive_recovered", after_failures=failures)
            failures = refusals = 0
            self._empty_polls = 0 if messages else self._empty_polls + 1
            messages = self._without_copies_in_hand(messages)
            if self._stopping.is_set():
                self._slots.give_back(wanted)
                await self._hand_back(messages)
                return
            self._slots.give_back(wanted - len(messages))
            if self._settings.is_fifo:
                messages = self._join_open_lanes(messages)
            for lane in lanes_of(messages, self._settings.is_fifo):
                self._start(lane)

    def _without_copies_in_hand(self, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        """SQS delivers at least once: a message in hand can come again (two receives at
        once, a visibility that ran out). Handling the copy too would publish twice: the
        message in hand takes the copy's receipt (the one SQS now honours) and settles it."""
        fresh: dict[str, ReceivedMessage] = {}
        for message in messages:
            action = "the message in hand takes this delivery's receipt; not handled twice"
            if (first := fresh.get(message.message_id)) is not None:
                first.receipt_handle = message.receipt_handle
                first.receive_count = max(first.receive_count, message.receive_count)
            elif self._heartbeat.adopt(message):
                pass
            elif self._heartbeat.settled_recently(message):
                action = "settled here moments ago: this delivery is deleted, not handled again"
                self._delete_copy(message)
            else:
                fresh[message.message_id] = message
                continue
            log.info(
                "copy_in_hand",
                message_id=message.message_id,
                receive_count=message.receive_count,
                action=action,
            )
            self._tally.count(Outcome.COPY_IN_HAND)
        return list(fresh.values()) if len(fresh) < len(messages) else messages

    def _delete_copy(self, copy: ReceivedMessage) -> None:
        task = asyncio.create_task(self._settle_copy(copy), name=f"copy-{copy.message_id}")
        self._copy_deletes.add(task)
        task.add_done_callback(self._copy_deletes.discard)

    async def _settle_copy(self, copy: ReceivedMessage) -> None:
        try:
            await self._queue.delete(copy)
        except Exception as error:
            # It comes back after its visibility timeout: remembered from now, it is
            # still known then, and deleted again.
            self._heartbeat.note_settled(copy.message_id)
            self._tally.call_failures[Component.SOURCE_QUEUE.value] += 1
            log.warning(
                "delete_failed", message_id=copy.message_id, error=describe_with_code(error)
            )

    def _join_open_lanes(self, messages: list[ReceivedMessage]) -> list[ReceivedMessage]:
        """FIFO: a group delivered again while its lane is open (its visibility ran out)
        brings its followers with the copies: they queue behind the lane, in order, not
        in a lane of their own. Returns the messages of the other groups."""
        open_lanes = {lane.group_id: lane for lane in self._lanes.values() if lane.open}
        others = []
        received_at = time.monotonic()
        for message in messages:
            lane = open_lanes.get(message.group_id)
            if lane is None:
                others.append(message)
            else:
                self._heartbeat.hold(message, received_at)
                lane.messages.append(message)
        return others

    async def _poll(self, wanted: int) -> list[ReceivedMessage]:
        self._polling += 1
        try:
            return await self._queue.receive(
                wanted, self._wait_seconds, self._settings.visibility_timeout_seconds
            )
        finally:
            self._polling -= 1

    def stop_report(self) -> str:
        """What stopping waits for, in words, for the person who pressed Ctrl-C."""
        started = sum(
            1
            for lane in self._lanes.values()
            if (current := lane.current) is not None and current in self._handler.started
        )
        parts = []
        if started:
            grace = self._settings.shutdown_grace_seconds
            parts.append(f"{started} message(s) to finish (up to {grace:.0f}s)")
        if self._polling:
            parts.append(
                f"{self._polling} long poll(s) to return (up to {self._wait_seconds}s;"
                " what they bring goes straight back)"
            )
        return "waiting for " + " and ".join(parts) if parts else "nothing in flight"

    async def _take_intake(self) -> int:
        """Slots for the next receive: free ones, and no more than the pacer starts
        within the horizon beyond the messages already waiting for their turn."""
        while True:
            # Wait for a full receive's worth of slots, or as many as the pacer starts.
            wanted = await self._slots.take_up_to(MAX_BATCH, fill=self._intake_room())
            allowed = min(wanted, self._intake_room(taken=wanted))
            if allowed > 0 or self._stopping.is_set():
                self._slots.give_back(wanted - max(allowed, 0))
                return max(allowed, 0)
            self._slots.give_back(wanted)
            await asyncio.sleep(
                min(1.0, max(INTAKE_RECHECK_SECONDS, 1.0 / self._pacer.controller.rate))
            )

    def _intake_room(self, *, taken: int = 0) -> int:
        """Messages the pacer starts within the horizon beyond those waiting for a turn
        (the ``taken`` slots, not yet filled, are not waiting)."""
        waiting = self._slots.in_use - taken - len(self._handler.started)
        return self._pacer.starts_within(INTAKE_HORIZON_SECONDS) - waiting

    async def _back_off(self, failures: int, error: Exception) -> None:
        delay = min(RECEIVE_BACKOFF_MAX, 0.5 * 2 ** min(failures, 10))
        log.warning(
            "receive_failed", error=describe(error), failures=failures, retry_in_seconds=delay
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def _start(self, lane: Lane) -> None:
        received_at = time.monotonic()
        for message in lane.messages:  # those waiting behind a FIFO head too
            self._heartbeat.hold(message, received_at)
        task = asyncio.create_task(self._run_lane(lane), name=f"lane-{lane.messages[0].message_id}")
        self._lanes[task] = lane
        task.add_done_callback(self._finished)

    async def _run_lane(self, lane: Lane) -> None:
        try:
            while (message := lane.current) is not None and not self._stopping.is_set():
                outcome = await self._handler.handle(message)
                self._health.progressed()
                lane.position += 1
                self._slots.give_back(1)
                if not outcome.settled and self._settings.is_fifo:
                    break
        finally:
            lane.open = False
        await self._hand_back(lane.remaining())

    def _finished(self, task: asyncio.Task[None]) -> None:
        lane = self._lanes.pop(task)
        left = lane.remaining()
        self._slots.give_back(len(left))
        if not task.cancelled() and (error := task.exception()) is not None:
            # A bug, not a message fault: the message is not deleted and comes back,
            # and so do those waiting behind it, no longer extended.
            log.error("handler_crashed", task=task.get_name(), exc_info=error)
            for message in left:
                self._heartbeat.release(message)

    async def _hand_back(self, messages: list[ReceivedMessage]) -> None:
        """Visibility 0: another consumer (or this one) takes them at once."""
        if not messages:
            return
        for message in messages:
            self._heartbeat.release(message)
        results = await asyncio.gather(
            *(self._queue.change_visibility(message, 0) for message in messages),
            return_exceptions=True,
        )
        failed = sum(isinstance(result, BaseException) for result in results)
        log.info("handed_back", messages=len(messages), failed=failed)

    async def _stop_when_drained(self) -> None:
        """Drained: nothing in hand, and the queue's depth (visible, in flight and
        delayed) read as zero twice, with an empty poll in between. The depth is an
        approximation; one zero reading right after a message was handed back with a
        delay has been seen to be wrong."""
        zero_readings = 0
        polls_at_last_reading = -1
        while True:
            await asyncio.sleep(DRAINED_CHECK_SECONDS)
            if self._lanes or not self._empty_polls:
                zero_readings = 0
                continue
            if self._empty_polls == polls_at_last_reading:
                continue  # wait for another empty poll before reading again
            try:
                depth = await self._queue.approximate_depth()
            except Exception as error:
                log.warning("queue_depth_failed", error=describe(error))
                continue
            polls_at_last_reading = self._empty_polls
            zero_readings = zero_readings + 1 if depth == 0 and not self._lanes else 0
            if zero_readings >= 2:
                log.info("queue_drained")
                return

    async def _drain(self) -> None:
        """Shutdown: messages not yet started go back at once; started ones get the grace
        period to finish; what is still running then is cancelled (not deleted, so it
        simply comes back later), except a message whose outcome is being made durable
        (``MessageHandler.finishing``): that one is waited for, never cut."""
        if not self._lanes:
            return
        unstarted = {
            task: lane for task, lane in self._lanes.items() if not self._in_progress(lane)
        }
        for task in unstarted:
            task.cancel()
        await asyncio.gather(*unstarted, return_exceptions=True)
        await self._hand_back([m for lane in unstarted.values() for m in lane.remaining()])
        running = set(self._lanes)
        if not running:
            return
        grace = self._settings.shutdown_grace_seconds
        log.info("draining", lanes=len(running), grace_seconds=grace)
        _, late = await asyncio.wait(running, timeout=grace)
        finishing = {task for task in late if self._finishing(self._lanes.get(task))}
        for task in late - finishing:
            task.cancel()
        if late - finishing:
            log.warning("drain_timeout_cancelled", lanes=len(late - finishing))
        if finishing:
            # A publish or DLQ send under way, then its delete (or a duplicate's delete,
            # or the claim's completion): cut now, the token would come back and be
            # published twice. Each call is bounded by its timeouts.
            log.info("drain_finishing", lanes=len(finishing))
        if late:
            await asyncio.wait(late)

    def _in_progress(self, lane: Lane) -> bool:
        current = lane.current
        return current is not None and (
            current in self._handler.started or current in self._handler.finishing
        )

    def _finishing(self, lane: Lane | None) -> bool:
        current = lane.current if lane is not None else None
        return current is not None and current in self._handler.finishing

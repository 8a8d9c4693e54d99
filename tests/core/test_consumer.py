"""The receive loop in-process (``Consumer`` over the fakes of tests/core/fakes.py):
the in-flight bound, shutdown and its grace period, FIFO lanes, a dead or refused receive.

Moved here from the end-to-end tests, with their assertions:

- test_worker.py::test_never_holds_more_than_max_in_flight ->
  test_never_holds_more_than_max_in_flight (deterministic: the fake queue counts what is
  in flight at every receive, instead of a thread sampling SQS's approximate count)
- test_resilience.py::test_shutdown_finishes_started_and_hands_back_the_rest ->
  test_shutdown_finishes_started_and_hands_back_the_rest
- test_resilience.py::test_a_publish_under_way_at_the_end_of_the_grace_is_finished_not_cut
  -> test_a_publish_under_way_at_the_end_of_the_grace_is_finished_not_cut
- test_resilience.py::test_a_malformed_message_being_dead_lettered_at_shutdown_is_not_handed_back
  -> test_a_malformed_message_being_dead_lettered_at_shutdown_is_not_handed_back
- test_resilience.py::test_fifo_failure_holds_back_only_its_group ->
  test_fifo_failure_holds_back_only_its_group
- test_resilience.py::test_a_dead_receive_loop_is_never_silent ->
  test_a_dead_receive_loop_is_never_silent
- test_resilience.py::test_a_receive_refused_while_the_probe_passes_backs_off ->
  test_a_receive_refused_while_the_probe_passes_backs_off
"""

from __future__ import annotations

import asyncio
import time

import pytest
from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from tests.core.fakes import FakeClaimStore, FakeQueue, Record
from tests.core.rig import Rig, eventually, fake_settings
from tests.support import stop_after, tag
from worker.aws.sqs_wire import BatchEntryError, ReceivedMessage
from worker.core.consumer import ReceiveLoopDied, Slots
from worker.core.errors import TransientError
from worker.core.events import event_id_for
from worker.core.tally import Tally

pytestmark = pytest.mark.usefixtures("quick_probes")


async def test_never_holds_more_than_max_in_flight() -> None:
    rig = Rig.build(fake_settings(max_in_flight=3))
    tokens = [f"bounded-{n}-{tag()}" for n in range(15)]
    rig.resolver.knows(*tokens)
    rig.queue.send_all(tokens)
    rig.resolver.gate = asyncio.Event()
    running = asyncio.create_task(rig.run(until_empty=True))
    # The bound is reached: three messages in hand, each waiting for its resolve.
    await eventually(lambda: rig.resolver.active == 3)
    assert rig.queue.in_flight == 3
    rig.resolver.gate.set()
    tally = await running
    assert tally.outcomes == {"published": len(tokens)}
    assert rig.queue.most_in_flight == 3  # busy all the way, never above the bound
    assert rig.resolver.most_active == 3  # the bound made them take turns


async def test_a_message_delivered_again_while_in_hand_is_handled_once() -> None:
    """SQS delivers at least once: here the visibility of a message in hand runs out and
    the next receive brings it again. The copy is not handled twice, and the message in
    hand is deleted with the copy's receipt (the fake, as SQS, honours only the latest)."""
    rig = Rig.build()
    token = f"again-{tag()}"
    rig.resolver.knows(token)
    message_id = rig.queue.send(token)
    rig.resolver.gate = asyncio.Event()
    running = asyncio.create_task(rig.run(until_empty=True))
    await eventually(lambda: rig.resolver.active == 1)
    rig.queue.time_passes()
    await eventually(lambda: rig.queue.stored[message_id].receive_count == 2)
    rig.resolver.gate.set()
    tally = await running
    assert tally.outcomes == {"published": 1, "copy_in_hand": 1}
    assert rig.resolver.calls == [token]
    assert rig.queue.left() == []


class SlowDeleteQueue(FakeQueue):
    """Deletes wait for ``go``. Strict, a delete checks the receipt (the latest only, as
    SQS); ``lenient``, an older receipt answers success too (as moto, and SQS at times,
    which then may not delete the message). Records the receipt of every delete."""

    def __init__(self, *, lenient: bool = False) -> None:
        super().__init__()
        self.lenient = lenient
        self.go = asyncio.Event()
        self.deleting = asyncio.Event()
        self.deleted_with: list[str] = []

    async def delete(self, message: ReceivedMessage) -> None:
        self.deleted_with.append(message.receipt_handle)
        self.deleting.set()
        await self.go.wait()
        if self.lenient:
            self.stored[message.message_id].deleted = True
        else:
            await super().delete(message)


async def delivered_again_while_deleting(queue: SlowDeleteQueue) -> tuple[Rig, Tally]:
    """One token published; while its delete waits, the message is delivered again."""
    rig = Rig.build(queue=queue)
    token = f"deleting-{tag()}"
    rig.resolver.knows(token)
    message_id = queue.send(token)
    running = asyncio.create_task(rig.run(until_empty=True))
    await queue.deleting.wait()  # published; the delete with the first receipt under way
    queue.time_passes()
    await eventually(lambda: queue.stored[message_id].receive_count == 2)
    queue.go.set()
    return rig, await running


async def test_a_message_delivered_again_while_being_deleted_is_deleted_with_the_copy() -> None:
    queue = SlowDeleteQueue()
    rig, tally = await delivered_again_while_deleting(queue)
    assert tally.outcomes == {"published": 1, "copy_in_hand": 1}
    assert queue.left() == []  # the first delete was refused; the copy's receipt did it
    assert len(rig.publisher.events) == 1


async def test_a_delete_that_met_a_new_delivery_is_sent_again_with_its_receipt() -> None:
    queue = SlowDeleteQueue(lenient=True)
    await delivered_again_while_deleting(queue)
    [stored] = queue.stored.values()
    assert len(queue.deleted_with) == 2
    assert queue.deleted_with[1] == stored.receipt_handle != queue.deleted_with[0]


def test_a_message_twice_in_one_receive_is_kept_once_with_the_later_receipt() -> None:
    rig = Rig.build()
    first = ReceivedMessage("m-1", "receipt-1", "token", 1)
    again = ReceivedMessage("m-1", "receipt-2", "token", 2)
    other = ReceivedMessage("m-2", "receipt-3", "other", 1)
    kept = rig.consumer()._without_copies_in_hand([first, again, other])
    assert kept == [first, other]
    assert (first.receipt_handle, first.receive_count) == ("receipt-2", 2)


async def test_a_crashed_lane_leaves_none_of_its_group_watched_forever() -> None:
    """A bug in the handler ends the lane: its message and the group's followers are not
    deleted, and no longer extended, so they all come back after their visibility."""
    rig = Rig.build(fake_settings(fifo=True))
    crashing, behind = f"crash-{tag()}", f"behind-{tag()}"
    rig.resolver.fails(crashing, then=RuntimeError("a bug"))
    rig.resolver.knows(behind)
    rig.queue.send(crashing, group="g")
    rig.queue.send(behind, group="g")
    with capture_logs() as logs:
        await rig.run(stop_after(0.5))
    assert [entry["event"] for entry in logs].count("handler_crashed") == 1
    assert rig.heartbeat.in_hand == 0
    assert sorted(rig.queue.invisible()) == sorted([crashing, behind])


async def test_a_fifo_group_delivered_again_keeps_its_order() -> None:
    """FIFO: the visibility of a group in hand runs out and SQS delivers the group again,
    the copies with a follower sent since: the follower queues behind the lane, so the
    group is still resolved in order, each message once."""
    rig = Rig.build(fake_settings(fifo=True))
    tokens = [f"fifo-{n}-{tag()}" for n in range(4)]
    rig.resolver.knows(*tokens)
    first, *_ = [rig.queue.send(token, group="g") for token in tokens[:3]]
    rig.resolver.gate = asyncio.Event()
    running = asyncio.create_task(rig.run(until_empty=True))
    await eventually(lambda: rig.resolver.active == 1)
    rig.queue.send(tokens[3], group="g")
    rig.queue.time_passes()
    await eventually(lambda: rig.queue.stored[first].receive_count == 2)
    rig.resolver.gate.set()
    tally = await running
    assert rig.resolver.calls == tokens
    assert tally.outcomes["published"] == len(tokens)
    assert tally.outcomes["copy_in_hand"] == 3
    assert rig.queue.left() == []


class SlowHandBackQueue(FakeQueue):
    """Hands back (visibility 0) wait for ``go``."""

    def __init__(self) -> None:
        super().__init__(fifo=True)
        self.go = asyncio.Event()
        self.handing_back = asyncio.Event()

    async def change_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        if seconds == 0:
            self.handing_back.set()
            await self.go.wait()
        await super().change_visibility(message, seconds)


async def test_a_fifo_group_delivered_while_its_lane_hands_back_gets_a_lane_of_its_own() -> None:
    """FIFO: a lane stops at a message it could not settle and hands back the group's
    followers. A new delivery of the group during that hand-back must not join the
    finished lane (nobody would handle it, and the heartbeat would hold it forever)."""
    queue = SlowHandBackQueue()
    claims = FakeClaimStore()
    rig = Rig.build(fake_settings(fifo=True), queue=queue, claims=claims)
    tokens = [f"closing-{n}-{tag()}" for n in range(3)]
    rig.resolver.knows(*tokens)
    busy = event_id_for(tokens[0])  # another worker holds its claim: the lane stops there
    claims.records[busy] = Record("IN_PROGRESS", "another-worker", time.monotonic() + 60)
    queue.send_all(tokens[:2], group="g")
    running = asyncio.create_task(rig.run(until_empty=True))
    await queue.handing_back.wait()  # the lane hands back the second message
    del claims.records[busy]  # the other worker let go
    queue.send(tokens[2], group="g")
    queue.time_passes()
    await eventually(lambda: rig.resolver.calls == tokens)
    queue.go.set()
    tally = await asyncio.wait_for(running, timeout=5)
    assert tally.outcomes["published"] == 3
    assert rig.publisher.event_ids() == [event_id_for(token) for token in tokens]
    assert rig.heartbeat.in_hand == 0
    assert queue.left() == []


class HeldReceiveQueue(FakeQueue):
    """Receives wait while ``held`` is set, until it is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.held: asyncio.Event | None = None
        self.waiting = 0

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        if self.held is not None:
            self.waiting += 1
            await self.held.wait()
        return await super().receive(max_messages, wait_seconds, visibility_timeout)


async def test_a_copy_received_at_shutdown_is_not_handed_back_under_the_message_in_hand() -> None:
    """A receive under way at shutdown brings a new delivery of a message in hand. What
    such a receive brings is handed back, but not the copy: its receipt is the one SQS
    now honours, so the message in hand takes it, finishes within the grace and deletes."""
    queue = HeldReceiveQueue()
    rig = Rig.build(queue=queue)
    token = f"copy-at-stop-{tag()}"
    rig.resolver.knows(token)
    message_id = queue.send(token)
    rig.resolver.gate = asyncio.Event()
    stop = asyncio.Event()
    running = asyncio.create_task(rig.run(stop))
    await eventually(lambda: rig.resolver.active == 1)
    queue.held = asyncio.Event()
    await eventually(lambda: queue.waiting >= 1)  # a receive is under way
    stop.set()
    await asyncio.sleep(0.05)  # the worker is stopping
    queue.time_passes()
    queue.held.set()
    await eventually(lambda: queue.stored[message_id].receive_count == 2)
    rig.resolver.gate.set()
    tally = await asyncio.wait_for(running, timeout=5)
    assert tally.outcomes["published"] == 1
    assert queue.handed_back() == []
    assert queue.left() == []


class SlowRequeueQueue(FakeQueue):
    """The first visibility change takes effect on the queue at once, but its answer
    reaches the worker only when ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.requeueing = asyncio.Event()

    async def change_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        await super().change_visibility(message, seconds)
        if not self.requeueing.is_set():
            self.requeueing.set()
            await self.go.wait()


async def test_a_handling_that_ends_late_leaves_the_next_delivery_in_hand() -> None:
    """A message requeued with no delay (REGWORKER_REQUEUE_MAX_SECONDS=0) comes back to
    this worker while its first handling still waits for the visibility change's answer.
    That handling's end must not take the new delivery out of hand: unwatched, its
    visibility would run out and it would be handled, and published, a second time."""
    queue = SlowRequeueQueue()
    rig = Rig.build(fake_settings(requeue_max_seconds=0, max_receives=5), queue=queue)
    token = f"requeued-{tag()}"
    rig.resolver.knows(token)
    rig.resolver.fails(token, TransientError("ResolveCustomer kept failing"))
    message_id = queue.send(token)
    stop = asyncio.Event()
    running = asyncio.create_task(rig.run(stop))
    await queue.requeueing.wait()  # the first try is requeued, visible at once
    rig.resolver.gate = asyncio.Event()
    await eventually(lambda: rig.resolver.active == 1)  # the second delivery's resolve
    queue.go.set()  # the first handling ends
    await eventually(lambda: rig.handler.tally.outcomes["requeued"] == 1)
    assert rig.heartbeat.in_hand == 1
    assert len(rig.handler.started) == 1
    queue.time_passes()  # delivered again: a copy of the message in hand
    await eventually(lambda: queue.stored[message_id].receive_count == 3)
    rig.resolver.gate.set()
    await eventually(lambda: rig.handler.tally.outcomes["published"] == 1)
    stop.set()
    tally = await running
    assert len(rig.publisher.events) == 1
    assert tally.outcomes == {"requeued": 1, "copy_in_hand": 1, "published": 1}


def server_error(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "InternalError", "Message": "try again"}}, operation)


@pytest.mark.parametrize("stopping", [False, True])
async def test_the_delete_after_a_publish_is_tried_again_at_shutdown_too(stopping: bool) -> None:
    """The delete after a publish fails once. Running, the fault hold retries it;
    stopping (SIGTERM during the publish), the hold no longer waits, but the delete
    still gets tries of its own: a published token left on the queue comes back."""
    rig = publishing_one()
    rig.queue.delete_trouble.refuse_next = [server_error("DeleteMessageBatch")]
    stop = asyncio.Event()
    running = asyncio.create_task(rig.run(stop, until_empty=not stopping))
    await rig.publisher.sending.wait()
    if stopping:
        stop.set()
    await asyncio.wait_for(running, 10)
    assert len(rig.publisher.events) == 1
    assert rig.queue.left() == []


def publishing_one(queue: FakeQueue | None = None) -> Rig:
    """A rig with one token on its queue whose publish takes 0.3 s."""
    rig = Rig.build(queue=queue)
    token = f"published-{tag()}"
    rig.resolver.knows(token)
    rig.queue.send(token)
    rig.publisher.delay = 0.3
    return rig


async def stop_during_the_publish(rig: Rig) -> None:
    """Run ``rig``, stop it (as SIGTERM does) while its publish is under way, and wait
    for the run to end."""
    stop = asyncio.Event()
    running = asyncio.create_task(rig.run(stop))
    await rig.publisher.sending.wait()
    stop.set()
    await asyncio.wait_for(running, 10)


async def test_a_fast_failing_delete_at_shutdown_gets_three_tries() -> None:
    rig = publishing_one()
    rig.queue.delete_trouble.refuse = server_error("DeleteMessageBatch")
    await stop_during_the_publish(rig)
    assert rig.queue.delete_trouble.calls == 3


class SlowFailingDeleteQueue(FakeQueue):
    """Deletes fail after ``seconds`` (an SQS that answers 500s slowly)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.deletes = 0

    async def delete(self, message: ReceivedMessage) -> None:
        self.deletes += 1
        await asyncio.sleep(self.seconds)
        raise server_error("DeleteMessageBatch")


async def test_a_slow_failing_delete_at_shutdown_is_not_tried_for_long() -> None:
    """The tries of a delete at shutdown are for an SQS that fails fast: when each try
    takes long, a new one would hold the stop past the deploy's stop timeout."""
    queue = SlowFailingDeleteQueue(0.8)
    await stop_during_the_publish(publishing_one(queue))
    assert queue.deletes == 2


async def test_a_delete_refused_for_its_receipt_at_shutdown_is_not_tried_again() -> None:
    rig = publishing_one()
    gone = BatchEntryError("ReceiptHandleIsInvalid", "not the current receipt", True)
    rig.queue.delete_trouble.refuse = gone
    with capture_logs() as logs:
        await stop_during_the_publish(rig)
    assert rig.queue.delete_trouble.calls == 1
    [failed] = [entry for entry in logs if entry["event"] == "delete_failed"]
    assert failed["error"] == "ReceiptHandleIsInvalid: not the current receipt"


class LateAnswerQueue(FakeQueue):
    """SQS as documented: a delete with a receipt that is no longer the latest succeeds
    but deletes nothing. ``stall``: the next receive takes its messages at once, but its
    answer reaches the worker only when ``answer`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.stall = False
        self.answer = asyncio.Event()
        self.slow_deletes: asyncio.Event | None = None  # deletes wait for it when set
        self.deleting = asyncio.Event()

    async def delete(self, message: ReceivedMessage) -> None:
        self.delete_trouble.call()
        if self.slow_deletes is not None:
            self.deleting.set()
            await self.slow_deletes.wait()
        stored = self.stored[message.message_id]
        if stored.receipt_handle == message.receipt_handle:
            stored.deleted = True

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        deadline = time.monotonic() + 0.05
        while True:
            batch = self._take(max(1, min(10, max_messages)), visibility_timeout)
            if batch and self.stall:
                self.stall = False
                await self.answer.wait()
            if batch or time.monotonic() >= deadline:
                return batch
            await asyncio.sleep(0.005)


class LaterClock:
    """time.monotonic, ``ahead`` seconds later: the heartbeat's view of a long wait."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead


async def settled_then_copy_answered(
    queue: LateAnswerQueue,
    *,
    copy_delete_fails: bool = False,
    clock: LaterClock | None = None,
    answer_after: float = 0.0,
) -> tuple[Rig, asyncio.Event, asyncio.Task[Tally]]:
    """The visibility of a message in hand ran out; a receive took it again (receipt 2)
    before the delete with receipt 1 arrived, so that delete deleted nothing. Returns
    once the message is settled, as the receive's answer (the copy) is let through."""
    clock = clock or LaterClock()
    rig = Rig.build(queue=queue, clock=clock)
    token = f"late-copy-{tag()}"
    rig.resolver.knows(token)
    message_id = queue.send(token)
    rig.publisher.delay = 0.2
    stop = asyncio.Event()
    running = asyncio.create_task(rig.run(stop))
    await rig.publisher.sending.wait()
    queue.stall = True
    queue.time_passes()  # its visibility ran out while in hand
    await eventually(lambda: queue.stored[message_id].receive_count == 2)
    await eventually(lambda: rig.handler.tally.outcomes["published"] == 1)  # settled
    if copy_delete_fails:
        queue.delete_trouble.refuse_next = [server_error("DeleteMessageBatch")]
    clock.ahead += answer_after
    queue.answer.set()  # the receive's answer arrives after the delete's
    return rig, stop, running


async def test_a_copy_answered_just_after_the_delete_is_deleted_not_published_again() -> None:
    queue = LateAnswerQueue()
    rig, stop, running = await settled_then_copy_answered(queue)
    await eventually(lambda: queue.left() == [])
    stop.set()
    tally = await running
    assert len(rig.publisher.events) == 1
    assert tally.outcomes == {"published": 1, "copy_in_hand": 1}


async def test_a_copy_whose_delete_failed_is_deleted_when_it_comes_again() -> None:
    queue = LateAnswerQueue()
    with capture_logs() as logs:
        rig, stop, running = await settled_then_copy_answered(queue, copy_delete_fails=True)
        await eventually(lambda: "delete_failed" in [entry["event"] for entry in logs])
    queue.time_passes()  # the copy comes back after its visibility timeout
    await eventually(lambda: queue.left() == [])
    stop.set()
    tally = await running
    assert len(rig.publisher.events) == 1
    assert tally.outcomes == {"published": 1, "copy_in_hand": 2}
    [failed] = [entry for entry in logs if entry["event"] == "delete_failed"]
    assert failed["error"] == "InternalError: try again"


async def test_a_late_copy_whose_delete_failed_is_known_when_it_comes_again() -> None:
    """The copy's receive answered 1.5 visibility timeouts after the settling and its
    delete failed: it comes back a timeout later, past the settling's memory, and is
    known because the failed delete renewed it."""
    queue = LateAnswerQueue()
    clock = LaterClock()
    timeout = fake_settings().visibility_timeout_seconds
    with capture_logs() as logs:
        rig, stop, running = await settled_then_copy_answered(
            queue, copy_delete_fails=True, clock=clock, answer_after=1.5 * timeout
        )
        await eventually(lambda: "delete_failed" in [entry["event"] for entry in logs])
    clock.ahead += timeout
    queue.time_passes()
    await eventually(lambda: queue.left() == [])
    stop.set()
    await running
    assert len(rig.publisher.events) == 1


async def test_a_copys_delete_under_way_at_shutdown_is_finished() -> None:
    queue = LateAnswerQueue()
    _, stop, running = await settled_then_copy_answered(queue)
    queue.slow_deletes = asyncio.Event()
    await queue.deleting.wait()  # the copy's delete
    stop.set()
    asyncio.get_running_loop().call_later(0.3, queue.slow_deletes.set)
    await running
    assert queue.left() == []


async def test_a_receive_waits_for_a_batch_of_free_slots_while_others_are_busy() -> None:
    slots = Slots(50)
    assert await slots.take_up_to(10, fill=10) == 10  # all free: at once
    slots.in_use = 45  # the pipeline is full
    taking = asyncio.create_task(slots.take_up_to(10, fill=10))
    slots.give_back(4)  # 9 free: a receive of 9 would cost as much as one of 10
    await asyncio.sleep(0.01)
    assert not taking.done()
    slots.give_back(1)
    assert await asyncio.wait_for(taking, 1) == 10
    assert slots.in_use == 50


async def test_a_receive_waits_for_no_more_slots_than_the_pacer_starts() -> None:
    slots = Slots(50)
    slots.in_use = 48
    assert await asyncio.wait_for(slots.take_up_to(10, fill=2), 1) == 2
    slots.in_use = 49
    taking = asyncio.create_task(slots.take_up_to(10, fill=3))
    slots.give_back(1)  # 2 free, 3 wanted by the pacer
    await asyncio.sleep(0.01)
    assert not taking.done()
    slots.give_back(1)
    assert await asyncio.wait_for(taking, 1) == 3


async def test_a_small_limit_never_waits_for_more_than_a_fifth_of_it() -> None:
    slots = Slots(20)
    slots.in_use = 19
    taking = asyncio.create_task(slots.take_up_to(10, fill=10))
    await asyncio.sleep(0.01)
    assert not taking.done()  # one free, four wanted (a fifth of 20)
    slots.give_back(3)
    assert await asyncio.wait_for(taking, 1) == 4
    one = Slots(3)
    one.in_use = 2
    assert await asyncio.wait_for(one.take_up_to(10, fill=10), 1) == 1  # a fifth of 3: one


async def test_shutdown_finishes_started_and_hands_back_the_rest() -> None:
    settings = fake_settings(max_in_flight=20, resolve_rate_limit=4, resolve_start_rate=4)
    rig = Rig.build(settings)
    tokens = [f"slow-{n}-{tag()}" for n in range(20)]
    rig.resolver.knows(*tokens)
    rig.resolver.delay = 0.5
    rig.queue.send_all(tokens)
    started = time.monotonic()
    tally = await rig.run(stop_after(0.6))
    took = time.monotonic() - started
    published = tally.outcomes["published"]
    assert 1 <= published < len(tokens)
    assert took < 0.6 + settings.shutdown_grace_seconds + 3
    # Handed back with visibility 0: readable at once, not after the visibility timeout.
    left = {stored.body for stored in rig.queue.left()}
    assert len(left) == len(tokens) - published
    assert rig.queue.invisible() == []
    assert rig.queue.handed_back()  # the ones received but not started went straight back
    assert set(rig.queue.handed_back()) <= left
    assert len(rig.publisher.events) == published
    assert rig.dead_letters.letters == []


async def test_a_publish_under_way_at_the_end_of_the_grace_is_finished_not_cut() -> None:
    """The grace period (1 s) ends while the event is being published (1.5 s): cutting
    the lane then would leave a published token on the queue, to be published again."""
    rig = Rig.build(fake_settings(shutdown_grace_seconds=1))
    token = f"grace-{tag()}"
    rig.resolver.knows(token)
    rig.publisher.delay = 1.5
    rig.queue.send(token)
    tally = await rig.run(await stop_when(rig.publisher.sending))
    assert tally.outcomes == {"published": 1}
    assert rig.publisher.event_ids() == [event_id_for(token)]
    assert rig.queue.left() == []  # deleted, not left to come back


async def test_a_malformed_message_being_dead_lettered_at_shutdown_is_not_handed_back() -> None:
    """Dead-lettering a malformed message never reaches the pacer, so it was not
    "started": shutdown handed it back while its DLQ send went on, two DLQ copies."""
    rig = Rig.build(fake_settings(shutdown_grace_seconds=1))
    rig.dead_letters.delay = 1.5  # beyond the grace period: finishing is never cut
    rig.queue.send("not a token at all")
    tally = await rig.run(await stop_when(rig.dead_letters.sending))
    assert tally.outcomes == {"dead_lettered": 1}
    assert len(rig.dead_letters.letters) == 1
    assert rig.queue.left() == []
    assert rig.queue.handed_back() == []


async def stop_when(started: asyncio.Event) -> asyncio.Event:
    """A worker's ``stop``, set as soon as ``started`` is."""
    stop = asyncio.Event()

    async def watch() -> None:
        await started.wait()
        stop.set()

    _watchers.add(asyncio.create_task(watch()))
    return stop


_watchers: set[asyncio.Task[None]] = set()


async def test_fifo_failure_holds_back_only_its_group() -> None:
    settings = fake_settings(fifo=True, max_receives=5, requeue_max_seconds=1)
    rig = Rig.build(settings)
    t = tag()
    group_a = [f"a1-{t}", f"a2-{t}", f"a3-{t}"]  # a1 needs several tries
    group_b = [f"b1-{t}", f"b2-{t}"]
    rig.resolver.knows(*group_a, *group_b)
    error = TransientError("InternalServiceErrorException: every try failed")
    rig.resolver.fails(group_a[0], error, error)
    rig.queue.send_all(group_a, group="A")
    rig.queue.send_all(group_b, group="B")
    with capture_logs() as logs:
        await rig.run(until_empty=True)
    assert [entry["event"] for entry in logs].count("retry_in_hand") == 2
    # a1 was retried in hand: neither it nor a2 and a3 behind it went back to the queue,
    # so no receive count was spent on a failure that was not theirs.
    assert not [entry for entry in logs if entry["event"] in {"requeued", "handed_back"}]
    assert rig.queue.visibility_changes == []
    order = rig.publisher.event_ids()  # the order they were published in
    assert len(order) == 5
    a = [order.index(event_id_for(body)) for body in group_a]
    b = [order.index(event_id_for(body)) for body in group_b]
    assert a == sorted(a)  # group A kept its order through a1's failures
    assert b == sorted(b)
    assert b[-1] < a[0]  # group B did not wait for group A


async def test_a_dead_receive_loop_is_never_silent() -> None:
    rig = Rig.build()
    rig.queue.trouble.refuse = ZeroDivisionError("a bug in the receive path")
    with pytest.raises(ReceiveLoopDied, match="ZeroDivisionError"):
        await asyncio.wait_for(rig.run(), timeout=10)


async def test_a_receive_refused_while_the_probe_passes_backs_off() -> None:
    """The probe (GetQueueAttributes) gets through, the receive does not: the loop must
    back off, not spin report, probe, receive at full speed."""
    rig = Rig.build(fake_settings(receive_concurrency=1, fault_probe_max_seconds=60))
    rig.queue.trouble.refuse = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "not sqs:ReceiveMessage"}},
        "ReceiveMessage",
    )
    await rig.run(stop_after(3.5))
    assert 2 <= rig.queue.receives <= 5  # at once, then after 1 and 2 s
    assert rig.queue.trouble.probes >= 2  # each refusal was put to the probe

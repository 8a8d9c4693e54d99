"""The micro-batcher: batches of at most ``max_size`` items and ``max_bytes``, each
submitter gets its own outcome, linger and concurrency limits hold, close flushes.

``send`` here is a plain coroutine of ours that records what it was given, standing in
for a batch API call; no AWS client is involved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
import structlog
from structlog.testing import capture_logs

from worker.core.batcher import Batcher


class EntryFailed(Exception):
    """One entry of a batch failed (as a batch API reports in its Failed list)."""


class CallFailed(Exception):
    """The whole batch call failed."""


@dataclass
class Recorder:
    """A fake batch API: records each batch, fails the items named in ``bad``, fails the
    whole call when a batch holds an item named in ``poison``."""

    delay: float = 0.0
    bad: frozenset[str] = frozenset()
    poison: frozenset[str] = frozenset()
    batches: list[list[str]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    async def send(self, items: Sequence[str]) -> list[str | BaseException]:
        self.batches.append(list(items))
        self.sent_at.append(time.monotonic())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.poison.intersection(items):
            raise CallFailed(f"batch of {len(items)} refused")
        return [EntryFailed(item) if item in self.bad else f"ok:{item}" for item in items]


def batcher(
    recorder: Recorder, *, linger: float = 0.05, concurrency: int = 4, max_size: int = 10
) -> Batcher[str, str]:
    return Batcher("test", recorder.send, linger=linger, concurrency=concurrency, max_size=max_size)


async def submit_all(target: Batcher[str, str], items: Sequence[str]) -> list[str | BaseException]:
    return await asyncio.gather(*(target.submit(item) for item in items), return_exceptions=True)


async def test_25_concurrent_submits_make_3_batches_of_at_most_10() -> None:
    recorder = Recorder()
    target = batcher(recorder, linger=0.05)
    items = [f"m{i}" for i in range(25)]
    outcomes = await submit_all(target, items)
    await target.close()
    assert outcomes == [f"ok:{item}" for item in items]
    assert [len(batch) for batch in recorder.batches] == [10, 10, 5]
    assert sorted(item for batch in recorder.batches for item in batch) == sorted(items)


async def test_an_entry_failure_reaches_only_its_submitter() -> None:
    recorder = Recorder(bad=frozenset({"m3", "m7"}))
    target = batcher(recorder)
    outcomes = await submit_all(target, [f"m{i}" for i in range(10)])
    await target.close()
    assert len(recorder.batches) == 1
    for index, outcome in enumerate(outcomes):
        if index in (3, 7):
            assert isinstance(outcome, EntryFailed)
            assert str(outcome) == f"m{index}"
        else:
            assert outcome == f"ok:m{index}"


async def test_a_failed_call_fails_every_item_of_its_batch_and_no_other() -> None:
    recorder = Recorder(poison=frozenset({"m12"}))
    target = batcher(recorder)
    outcomes = await submit_all(target, [f"m{i}" for i in range(20)])
    await target.close()
    assert [len(batch) for batch in recorder.batches] == [10, 10]
    assert outcomes[:10] == [f"ok:m{i}" for i in range(10)]
    assert all(isinstance(outcome, CallFailed) for outcome in outcomes[10:])


async def test_the_batchers_lines_are_no_submitters() -> None:
    """The batcher's task starts at the first submit, inside that message's log context;
    a failed batch holds many messages, so its line must not carry the first one's id."""
    recorder = Recorder(poison=frozenset({"m1"}))
    target = batcher(recorder)
    with (
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
        structlog.contextvars.bound_contextvars(message_id="first", token="abc123"),
    ):
        outcomes = await submit_all(target, ["m0", "m1"])
        await target.close()
    assert all(isinstance(outcome, CallFailed) for outcome in outcomes)
    assert [entry["event"] for entry in logs] == ["batch_failed"]
    assert "message_id" not in logs[0]
    assert "token" not in logs[0]


async def test_max_bytes_splits_batches() -> None:
    recorder = Recorder()
    target: Batcher[str, str] = Batcher(
        "bytes",
        recorder.send,
        max_bytes=100,
        size_of=len,
    )
    items = [c * 40 for c in "abcdefg"]  # 40 bytes each: two fit in 100, three do not
    outcomes = await submit_all(target, items)
    await target.close()
    assert outcomes == [f"ok:{item}" for item in items]
    assert [len(batch) for batch in recorder.batches] == [2, 2, 2, 1]
    assert all(sum(map(len, batch)) <= 100 for batch in recorder.batches)


async def test_a_lone_item_goes_at_once_when_nothing_is_in_flight() -> None:
    recorder = Recorder()
    target = batcher(recorder, linger=5.0)
    started = time.monotonic()
    assert await target.submit("only") == "ok:only"
    elapsed = time.monotonic() - started
    await target.close()
    assert recorder.batches == [["only"]]
    assert elapsed < 1.0  # not the 5 s linger


async def test_items_linger_and_batch_while_a_send_is_in_flight() -> None:
    recorder = Recorder(delay=0.3)
    target = batcher(recorder, linger=0.2)
    first = asyncio.create_task(target.submit("first"))
    await asyncio.sleep(0.05)  # "first" is on the wire
    started = time.monotonic()
    later = [asyncio.create_task(target.submit(f"m{i}")) for i in range(3)]
    await asyncio.sleep(0.05)
    assert recorder.batches == [["first"]]  # the others wait for company
    assert await asyncio.gather(first, *later) == ["ok:first", "ok:m0", "ok:m1", "ok:m2"]
    await target.close()
    assert recorder.batches == [["first"], ["m0", "m1", "m2"]]
    assert recorder.sent_at[1] - started >= 0.18  # they lingered up to the linger


async def test_a_full_batch_does_not_wait_for_the_linger() -> None:
    recorder = Recorder()
    target = batcher(recorder, linger=5.0)
    started = time.monotonic()
    outcomes = await submit_all(target, [f"m{i}" for i in range(10)])
    await target.close()
    assert len(outcomes) == 10
    assert time.monotonic() - started < 2.0


async def test_close_flushes_pending_items() -> None:
    recorder = Recorder(delay=0.1)
    target = batcher(recorder, linger=5.0)
    busy = asyncio.create_task(target.submit("busy"))
    await asyncio.sleep(0.02)  # in flight, so the next items linger
    submits = [asyncio.create_task(target.submit(f"m{i}")) for i in range(3)]
    await asyncio.sleep(0.05)  # queued, batch still lingering
    assert recorder.batches == [["busy"]]
    started = time.monotonic()
    await target.close()
    assert time.monotonic() - started < 2.0  # close did not wait out the 5 s linger
    assert recorder.batches == [["busy"], ["m0", "m1", "m2"]]
    assert [task.result() for task in [busy, *submits]] == ["ok:busy", "ok:m0", "ok:m1", "ok:m2"]


async def test_close_waits_for_sends_in_flight_and_the_batcher_can_be_reused() -> None:
    recorder = Recorder(delay=0.2)
    target = batcher(recorder, linger=0.0)
    first = asyncio.create_task(target.submit("early"))
    await asyncio.sleep(0.05)  # sent, not yet answered
    await target.close()
    assert first.done()
    assert first.result() == "ok:early"
    assert await target.submit("late") == "ok:late"
    await target.close()
    assert recorder.batches == [["early"], ["late"]]


async def test_concurrency_limit_is_honoured() -> None:
    recorder = Recorder(delay=0.1)
    target = batcher(recorder, linger=0.0, concurrency=2, max_size=1)
    outcomes = await submit_all(target, [f"m{i}" for i in range(8)])
    await target.close()
    assert len(outcomes) == 8
    assert len(recorder.batches) == 8
    assert recorder.most_in_flight == 2


async def test_without_a_limit_in_reach_sends_overlap() -> None:
    # The counterpart of the test above: it shows most_in_flight can exceed 1.
    recorder = Recorder(delay=0.1)
    target = batcher(recorder, linger=0.0, concurrency=8, max_size=1)
    await submit_all(target, [f"m{i}" for i in range(8)])
    await target.close()
    assert recorder.most_in_flight > 2


async def test_a_cancelled_submitter_does_not_disturb_the_others() -> None:
    recorder = Recorder(delay=0.1)
    target = batcher(recorder, linger=0.0)
    doomed = asyncio.create_task(target.submit("doomed"))
    kept = asyncio.create_task(target.submit("kept"))
    await asyncio.sleep(0.02)
    doomed.cancel()
    assert await kept == "ok:kept"
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await target.close()


# ---------------------------------------------------------------- known defects (report)


async def test_a_send_answering_too_few_outcomes_fails_its_submitters() -> None:
    async def short_answer(items: Sequence[str]) -> list[str | BaseException]:
        return ["ok"] * (len(items) - 1)

    target: Batcher[str, str] = Batcher("short", short_answer, linger=0.0)
    submits = asyncio.gather(target.submit("a"), target.submit("b"), return_exceptions=True)
    outcomes = await asyncio.wait_for(submits, 1.0)
    assert all(isinstance(outcome, Exception) for outcome in outcomes)
    await asyncio.wait_for(target.close(), 1.0)


async def test_a_submit_racing_close_is_still_sent() -> None:
    recorder = Recorder(delay=0.05)
    target = batcher(recorder, linger=0.0)
    assert await target.submit("first") == "ok:first"
    closing = asyncio.create_task(target.close())
    await asyncio.sleep(0)  # close() is now cancelling the collector
    late = asyncio.create_task(target.submit("late"))
    await closing
    assert await asyncio.wait_for(late, 1.0) == "ok:late"

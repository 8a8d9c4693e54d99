"""The DLQ replay's pacer, on a fake clock: the worker's spacing rule at a fixed rate."""

from __future__ import annotations

import pytest

from worker.ops.dlq.pacing import ReplayPacer, StopFlag


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_replay_pacer_sends_at_most_rate_messages_per_second() -> None:
    time = FakeTime()
    pacer = ReplayPacer(20, clock=time.clock, sleep=time.sleep)
    stop = StopFlag()
    start = time.now
    for _ in range(11):
        assert pacer.wait(pacer.batch_size(), stop)
    # 11 batches of 10 at 20/s: the first goes at once, each next 0.5 s after it.
    assert time.now - start == pytest.approx(5.0)


def test_replay_pacer_without_a_rate_never_waits() -> None:
    time = FakeTime()
    pacer = ReplayPacer(None, clock=time.clock, sleep=time.sleep)
    assert all(pacer.wait(10, StopFlag()) for _ in range(100))
    assert (time.slept, pacer.batch_size()) == ([], 10)


def test_replay_pacer_stops_while_waiting() -> None:
    time = FakeTime()
    stop = StopFlag()
    pacer = ReplayPacer(1, clock=time.clock, sleep=lambda seconds: stop.set())
    assert pacer.wait(1, stop)
    assert not pacer.wait(1, stop)


def test_replay_pacer_does_not_catch_up_after_a_slow_batch() -> None:
    """A batch sent late (a slow scan) is followed by the next a whole spacing later,
    never two batches within one spacing: at most ``rate`` messages in any second."""
    time = FakeTime()
    pacer = ReplayPacer(20, clock=time.clock, sleep=time.sleep)
    stop = StopFlag()
    assert pacer.wait(10, stop)
    time.now += 0.95  # the scan for the second batch took almost a second
    assert pacer.wait(10, stop)
    sent = time.now
    assert pacer.wait(10, stop)
    assert time.now - sent == pytest.approx(0.5)

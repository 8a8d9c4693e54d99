"""The ResolveCustomer flow controller, on a fake clock: one decrease per window, scaled
by the throttled share; recovery with time up to the ceiling; a floor; fairness and
goodput on a simulated account quota (``tests/flow_sim.py``). The pacer's spacing is
checked in real time, with loose bounds: lower bounds are what it promises, upper
bounds only catch a hang."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from tests.flow_sim import FakeClock, Simulation
from worker.core.flow_control import (
    FLOOR,
    PROBE_CALLS_PER_SECOND,
    PROBE_FAST_AFTER_SECONDS,
    PROVEN_SECONDS,
    TRUST_EPISODE_SECONDS,
    WINDOW_CALLS,
    FlowController,
    Pacer,
)


def controller_at(rate: float, clock: FakeClock, ceiling: float = 100.0) -> FlowController:
    """A controller starting at ``rate`` (one clean window at the ceiling would keep
    growing: start where the test wants to be). Its slow start is not over: its first
    cut is slow start's (tests of later cuts cut once first)."""
    return FlowController(ceiling, start_rate=rate, clock=clock)


def answer(
    controller: FlowController,
    clock: FakeClock,
    calls: int,
    throttled: int,
    *,
    retry: bool = False,
) -> None:
    """``calls`` calls sent 10 ms apart, answered 20 ms later, the first ``throttled`` of
    them with a throttle."""
    for n in range(calls):
        sent_at = controller.on_send()
        clock.now += 0.02
        controller.on_answer(sent_at, throttled=n < throttled, retry=retry)
        clock.now -= 0.01


def test_slow_start_doubles_every_second_up_to_the_ceiling() -> None:
    clock = FakeClock()
    controller = FlowController(20, start_rate=5, clock=clock)
    rates = []
    for _ in range(4):
        answer(controller, clock, WINDOW_CALLS, throttled=0)  # clean windows roll over
        clock.now += 1.0
        rates.append(controller.rate)
    assert rates[0] > 5
    assert rates == sorted(rates)
    assert rates[-1] == 20  # the ceiling, never above


def test_a_throttled_window_decreases_once_whatever_the_number_of_throttles() -> None:
    clock = FakeClock()
    controller = controller_at(50, clock)
    sent = [controller.on_send() for _ in range(40)]  # a burst in one window
    clock.now += 0.05
    for n, sent_at in enumerate(sent):
        clock.now += 0.05  # answers trickle in over two seconds
        controller.on_answer(sent_at, throttled=n % 2 == 0)
    assert controller.decreases == 1
    assert controller.throttled == 20


def test_answers_to_calls_sent_before_a_decrease_are_no_new_signal() -> None:
    clock = FakeClock()
    controller = controller_at(50, clock)
    early = [controller.on_send() for _ in range(30)]
    clock.now += 1.0
    for sent_at in early[:WINDOW_CALLS]:
        controller.on_answer(sent_at, throttled=True)
    assert controller.decreases == 1
    after_first_cut = controller.rate
    for sent_at in early[WINDOW_CALLS:]:  # all sent before that cut
        controller.on_answer(sent_at, throttled=True)
    assert controller.decreases == 1
    assert controller.rate == after_first_cut


def first_cut(throttled_in_100: int) -> MutableMapping[str, Any]:
    clock = FakeClock()
    controller = controller_at(50, clock)
    with capture_logs() as logs:
        answer(controller, clock, 150, throttled=throttled_in_100)
    cuts = [entry for entry in logs if "throttled" in entry.get("why", "")]
    assert cuts, "no decrease"
    return cuts[0]


def test_an_isolated_throttle_costs_little_and_a_flood_costs_a_lot() -> None:
    isolated = first_cut(1)  # one throttle in a window of 100 calls
    assert isolated["new"] >= 0.9 * isolated["old"]
    flood = first_cut(100)
    assert flood["new"] <= 0.7 * flood["old"] + 0.01


def cuts_leaving_slow_start(calls: int, throttled: int) -> list[MutableMapping[str, Any]]:
    """The ``flow_rate`` cuts of a controller in slow start at 17.5/s given two windows
    of ``calls`` answers, the first ``throttled`` of each throttled, and one more."""
    clock = FakeClock()
    controller = FlowController(100, start_rate=10, clock=clock)
    clock.now += 1.0  # slow start: 17.5/s now (1.75 x the first window's rate)
    with capture_logs() as logs:
        answer(controller, clock, calls, throttled=throttled)
        clock.now += 1.0
        answer(controller, clock, calls, throttled=throttled)
        clock.now += 0.6
        answer(controller, clock, 1, throttled=1)
    return [entry for entry in logs if "throttled" in entry.get("why", "")]


def test_leaving_slow_start_may_halve_later_cuts_only_take_30_percent() -> None:
    """A window of throttles alone says the quota is lower, not how much: the window
    that ends slow start cuts to half (TCP halves there); after it, a flood costs 30%
    a window."""
    cuts = cuts_leaving_slow_start(calls=30, throttled=30)
    assert len(cuts) == 2
    assert cuts[0]["new"] == pytest.approx(0.5 * cuts[0]["old"], abs=0.02)
    assert cuts[1]["new"] >= 0.7 * cuts[1]["old"] - 0.01


def test_leaving_slow_start_the_rate_falls_to_what_got_through_however_deep() -> None:
    """Three in four calls throttled while growing (a fleet started together, four times
    over the quota): the first cut goes to a margin below the quarter that got through,
    not to half; the same share after slow start takes only 30%."""
    cuts = cuts_leaving_slow_start(calls=40, throttled=30)
    assert len(cuts) == 2
    assert cuts[0]["new"] <= 0.25 * cuts[0]["old"]
    assert cuts[1]["new"] >= 0.7 * cuts[1]["old"] - 0.01


def test_leaving_slow_start_on_few_first_attempts_halves_at_most() -> None:
    """Three of four throttled says little: the cut is bounded as for a window of
    throttles, however few got through."""
    clock = FakeClock()
    controller = FlowController(100, start_rate=4, clock=clock)
    with capture_logs() as logs:
        answer(controller, clock, 3, throttled=3)
        clock.now += 1.46  # the next answer comes past the window's longest span
        answer(controller, clock, 1, throttled=0)
    cuts = [entry for entry in logs if "throttled" in entry.get("why", "")]
    assert len(cuts) == 1
    sent_rate = 4 / clock.now  # what the cut starts from: below the allowed rate
    assert cuts[0]["new"] == pytest.approx(0.5 * sent_rate, abs=0.02)  # not 0.2 x


def test_below_one_call_per_window_windows_still_mature_and_the_rate_recovers() -> None:
    """Under 1 / 1.5 calls/s every gap between calls is longer than a window's longest
    span: were a window restarted at each gap as after idle time, none would be judged
    and the rate would stay at the floor for good."""
    clock = FakeClock()
    controller = controller_at(20, clock, ceiling=20)
    for _ in range(200):  # a long flood: down to the floor
        answer(controller, clock, WINDOW_CALLS, throttled=WINDOW_CALLS)
        clock.now += 0.1
    assert controller.rate < 1 / 1.5
    Simulation([controller], clock).run(clock.now + 120, starts=[clock.now])
    assert controller.rate >= 10


def test_each_decrease_is_logged_with_old_new_and_why() -> None:
    cut = first_cut(20)
    assert cut["event"] == "flow_rate"
    assert cut["old"] > cut["new"]
    assert re.fullmatch(
        r"throttled 20 of (\d\d) calls \(20 of \1 first attempts\) in the last window",
        str(cut["why"]),
    )


def test_rate_changes_are_logged_as_the_controllers_not_the_messages() -> None:
    """Answers are recorded in a message's log context; the rate change they cause is
    the controller's, and must not carry that message's id or token."""
    clock = FakeClock()
    controller = controller_at(5, clock)
    with (
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
        structlog.contextvars.bound_contextvars(message_id="m-1", token="abc123"),
    ):
        answer(controller, clock, 400, throttled=0)  # slow start
        answer(controller, clock, 150, throttled=100)
    whys = {str(entry["why"]).split()[0] for entry in logs if entry["event"] == "flow_rate"}
    assert whys >= {"throttled", "no"}  # a decrease and an increase
    assert all("message_id" not in entry and "token" not in entry for entry in logs)


def test_the_rate_recovers_with_time_not_with_successes_up_to_the_ceiling() -> None:
    """Two controllers cut alike; one then gets ten times the answers of the other over
    the same minute. Both climb back alike, to the ceiling."""
    clocks = [FakeClock(), FakeClock()]
    busy, quiet = (controller_at(40, clock, ceiling=40) for clock in clocks)
    for controller, clock in zip((busy, quiet), clocks, strict=True):
        answer(controller, clock, 150, throttled=75)
    assert busy.rate == pytest.approx(quiet.rate)
    cut = busy.rate
    assert cut < 40
    readings = []
    for _ in range(60):
        answer(busy, clocks[0], 50, throttled=0)  # 0.5 s of calls
        answer(quiet, clocks[1], 5, throttled=0)
        clocks[0].now += 0.5
        clocks[1].now += 0.95
        readings.append((busy.rate, quiet.rate))
    assert readings[0][0] > cut
    assert readings[-1] == (40, 40)
    halfway = readings[10]
    assert halfway[0] == pytest.approx(halfway[1], rel=0.25)


def test_a_long_flood_drives_the_rate_down_but_never_below_the_floor() -> None:
    clock = FakeClock()
    controller = controller_at(50, clock)
    for _ in range(200):
        answer(controller, clock, WINDOW_CALLS, throttled=WINDOW_CALLS)
        clock.now += 0.1
        assert controller.rate >= FLOOR
    assert controller.decreases >= 30
    assert controller.rate < 0.2 * 50


def test_one_throttle_after_idle_time_costs_one_window_not_the_rate() -> None:
    clock = FakeClock()
    controller = FlowController(20, start_rate=20, clock=clock)
    answer(controller, clock, 100, throttled=0)
    clock.now += 60.0  # a quiet minute
    with capture_logs() as logs:
        answer(controller, clock, 60, throttled=1)
    cuts = [entry for entry in logs if "throttled" in entry.get("why", "")]
    assert len(cuts) == 1
    assert cuts[0]["new"] >= 0.7 * cuts[0]["old"] - 0.01


def test_a_late_throttle_still_counts_after_a_clean_window_rolls_over() -> None:
    clock = FakeClock()
    controller = FlowController(50, start_rate=50, clock=clock)
    slow = controller.on_send()  # answered only after its window has rolled over
    answer(controller, clock, 60, throttled=0)
    assert controller.decreases == 0
    controller.on_answer(slow, throttled=True)
    answer(controller, clock, 60, throttled=0)
    assert controller.throttled == 1
    assert controller.decreases == 1


def test_a_ceiling_under_one_call_per_horizon_still_lets_a_message_in() -> None:
    pacer = Pacer(FlowController(0.2, start_rate=0.2))
    assert pacer.starts_within(2.0) == 1


def test_throttled_retries_are_no_signal_while_first_attempts_get_through() -> None:
    """A token refused for itself is retried again and again: while first attempts get
    through, its throttled retries must not drag the rate down."""
    clock = FakeClock()
    controller = controller_at(20, clock)
    for _ in range(10):  # 5 s of windows: clean first attempts, throttled retries
        answer(controller, clock, 10, throttled=0)
        answer(controller, clock, 10, throttled=10, retry=True)
        clock.now += 0.5
    assert controller.decreases == 0
    assert controller.throttled == 100  # still counted, for the metrics


def test_when_only_retries_are_answered_their_throttles_count() -> None:
    """Every message in hand is retrying (a quota far below the rate): with no first
    attempts to judge by, the retries' throttles are the signal."""
    clock = FakeClock()
    controller = controller_at(20, clock)
    answer(controller, clock, 40, throttled=40, retry=True)
    clock.now += 1.0
    answer(controller, clock, 1, throttled=1, retry=True)
    assert controller.decreases == 1


def throttled_once(controller: FlowController, clock: FakeClock) -> list[float]:
    """One decrease after a clean window, then 20 s of clean, slow windows: the rate
    read every 0.5 s (after the decrease first)."""
    answer(controller, clock, 20, throttled=0)
    clock.now += 0.5
    answer(controller, clock, 1, throttled=1)  # the window is judged: one decrease
    assert controller.decreases == 1
    readings = [controller.rate]
    for _ in range(40):
        answer(controller, clock, 2, throttled=0)
        clock.now += 0.5
        readings.append(controller.rate)
    return readings


def test_near_the_last_plateau_the_rate_probes_upwards_by_calls_per_second() -> None:
    """After a decrease the climb back to what got through is quick; above it the rate
    grows by PROBE_CALLS_PER_SECOND each second, the same for every worker, so a slow
    window cannot overshoot far and a larger share gains no faster than a smaller one."""
    clock = FakeClock()
    readings = throttled_once(controller_at(5, clock, ceiling=50), clock)
    plateau = next(n for n, rate in enumerate(readings) if rate >= max(readings[:8]))
    probing = readings[plateau:]
    for before, after in zip(probing, probing[2:], strict=False):  # 1.04 s apart
        assert after - before <= 1.1 * PROBE_CALLS_PER_SECOND * 1.04 + 1e-9
    assert probing[-1] - probing[0] >= 0.5 * PROBE_CALLS_PER_SECOND * len(probing) * 0.52


def test_two_rates_probe_up_by_the_same_calls_per_second() -> None:
    clock = FakeClock()
    small, large = controller_at(4, clock), controller_at(40, clock)
    gains = []
    for controller in (small, large):
        readings = throttled_once(controller, clock)
        gains.append(readings[-1] - readings[-21])  # the last 10 s, probing
    assert gains[0] == pytest.approx(gains[1], rel=0.25)


def test_after_long_without_a_cut_the_probe_grows_with_the_rate() -> None:
    """Capacity freed (a worker stopped, the quota raised) is found within seconds once
    nothing was throttled for PROBE_FAST_AFTER_SECONDS: the probe then grows by 10% of
    the rate a second, not by a fixed 0.1 calls/s."""
    clock = FakeClock()
    controller = controller_at(50, clock, ceiling=1000)
    answer(controller, clock, 20, throttled=0)
    clock.now += 0.5
    answer(controller, clock, 1, throttled=1)
    assert controller.decreases == 1
    after_cut = clock.now
    while clock.now - after_cut < PROBE_FAST_AFTER_SECONDS:
        answer(controller, clock, 30, throttled=0)
        clock.now += 0.3
    slow = controller.rate
    for _ in range(40):  # about 10 s more
        answer(controller, clock, 30, throttled=0)
        clock.now += 0.3
    assert controller.rate >= 1.8 * slow


def test_throttled_at_a_proven_rate_it_climbs_straight_back() -> None:
    """A rate that ran clean for PROVEN_SECONDS is trusted for one episode: a burst of
    throttles there (tokens refused for themselves, a passing limit) costs a few
    seconds, not the slow probe back. A cut after the episode, still near that rate,
    voids the proof: the quota did change."""
    clock = FakeClock()
    controller = controller_at(20, clock, ceiling=20)

    def window(throttled: int) -> None:
        clock.now += 0.5
        answer(controller, clock, 20, throttled=throttled)

    while clock.now < PROVEN_SECONDS + 1:
        window(0)
    window(20)
    window(20)  # a window of throttles: cut as deep as one window may
    assert controller.rate < 16
    burst_at = clock.now
    while controller.rate < 19.5 and clock.now - burst_at < 30:
        window(0)
    assert clock.now - burst_at < 5  # back at the proven rate within seconds
    while clock.now - burst_at < TRUST_EPISODE_SECONDS + 1:
        window(0)
    window(20)  # the episode is over: the quota moved
    window(20)
    cut_at = clock.now
    while clock.now - cut_at < 10:
        window(0)
    assert controller.rate < 16


def test_a_rate_clean_for_less_than_the_proof_is_not_trusted() -> None:
    """Clean windows at a rate for less than PROVEN_SECONDS (here: right after slow start
    reached the ceiling) prove nothing: a window of throttles then costs the slow probe
    back, not a quick return."""
    clock = FakeClock()
    controller = FlowController(20, start_rate=2, clock=clock)

    def window(throttled: int) -> None:
        clock.now += 0.5
        answer(controller, clock, 20, throttled=throttled)

    while controller.rate < 20:
        window(0)
    window(0)
    window(20)
    window(20)
    cut_at = clock.now
    while clock.now - cut_at < 5:
        window(0)
    assert controller.rate < 16


@pytest.mark.parametrize(("quota", "throttles_per_success"), [(5.0, 0.1), (20.0, 0.1)])
def test_one_controller_finds_an_unknown_quota(quota: float, throttles_per_success: float) -> None:
    """Goodput within 10% of the quota with a ceiling ten times above it, and no more
    than one throttled call per ten that got through."""
    clock = FakeClock()
    controller = FlowController(10 * quota, start_rate=5, clock=clock)
    sim = Simulation([controller], clock, quota=quota)
    sim.run(120)
    steady = sim.tallies[0]
    goodput = steady.successes_between(30, 120) / 90
    throttled = steady.throttles_between(30, 120)
    assert goodput >= 0.9 * quota
    assert throttled / steady.successes_between(30, 120) <= throttles_per_success


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_controllers_converge_to_a_fair_share(seed: int) -> None:
    """The first has the whole quota (its rate proven) when the second comes at 30 s;
    within five minutes they share it. Additive probing converges in cycles of a cut
    and a slow climb, tens of seconds each at 20 calls/s."""
    clock = FakeClock()
    controllers = [FlowController(200, start_rate=5, clock=clock) for _ in range(2)]
    sim = Simulation(controllers, clock, quota=20, seed=seed)
    sim.run(330, starts=[0.0, 30.0])
    shares = [tally.successes_between(150, 330) / 180 for tally in sim.tallies]
    assert sum(shares) >= 0.9 * 20
    assert min(shares) / max(shares) >= 0.6


def test_three_controllers_share_a_small_quota_fairly_with_few_throttles() -> None:
    """Three workers started together on an account quota of 5/s, at the defaults' start
    rate: each gets a fair share, and in steady state fewer than one call in ten is
    throttled (the bench measures the same on the emulator)."""
    clock = FakeClock()
    controllers = [FlowController(50, start_rate=4, clock=clock) for _ in range(3)]
    sim = Simulation(controllers, clock, quota=5)
    sim.run(400, starts=[0.0, 0.4, 0.8])
    shares = [tally.successes_between(100, 400) for tally in sim.tallies]
    throttles = sum(tally.throttles_between(100, 400) for tally in sim.tallies)
    assert sum(shares) / 300 >= 0.9 * 5
    assert min(shares) / max(shares) >= 0.6
    assert throttles / sum(shares) <= 0.1


def test_a_burst_of_throttled_tokens_does_not_collapse_a_batch() -> None:
    """420 messages at a ceiling of 20/s, 20 of them throttled twice whatever the rate
    (the emulator's throttle-2- tokens, AWS never does this), after 300 plain ones as in
    the bench's mixed batch: the rate has run clean at the ceiling long enough to be
    proven, so it climbs straight back and the batch drains within 1.5 x N / ceiling.
    (A burst in the first seconds, before any rate is proven, costs the slow probe.)"""
    clock = FakeClock()
    controller = FlowController(20, start_rate=4, clock=clock)  # the defaults
    backlog = [0] * 300 + [2] * 20 + [0] * 100
    drained = Simulation([controller], clock).run(600, backlog=backlog)
    assert drained <= 1.5 * len(backlog) / 20


async def test_the_pacer_spaces_calls_at_the_rate() -> None:
    pacer = Pacer(FlowController(50, start_rate=50))
    started = time.monotonic()
    await asyncio.gather(*(pacer.acquire() for _ in range(11)))
    elapsed = time.monotonic() - started
    assert elapsed >= 0.19  # 10 gaps of 20 ms
    assert elapsed < 2.0


async def test_idle_time_does_not_bank_a_burst() -> None:
    pacer = Pacer(FlowController(20, start_rate=20))
    await pacer.acquire()
    await asyncio.sleep(0.3)  # six slots' worth of idle time
    started = time.monotonic()
    for _ in range(4):
        await pacer.acquire()
    assert time.monotonic() - started >= 0.14  # 3 gaps of 50 ms after the first


class SetRate(FlowController):
    """A controller whose rate the test sets."""

    set_to = 1.0

    @property
    def rate(self) -> float:
        return self.set_to


async def test_a_rate_change_applies_to_the_next_turn_not_after_the_queue() -> None:
    """Twenty callers queue at 10/s; the rate then rises to 200/s: the queue drains at
    the new rate (0.1 s), not at the rate it queued at (2 s)."""
    controller = SetRate(200, start_rate=10)
    controller.set_to = 10.0
    pacer = Pacer(controller)
    queued = [asyncio.create_task(pacer.acquire()) for _ in range(20)]
    await asyncio.sleep(0.15)  # two turns at 10/s
    assert pacer.waiting >= 17
    controller.set_to = 200.0
    started = time.monotonic()
    await asyncio.gather(*queued)
    assert time.monotonic() - started < 1.0


async def test_starts_within_counts_the_callers_already_waiting() -> None:
    clock = FakeClock()
    pacer = Pacer(FlowController(10, start_rate=10, clock=clock), clock=clock)
    assert pacer.starts_within(2.0) == 20
    waiting = [asyncio.create_task(pacer.acquire()) for _ in range(6)]
    await asyncio.sleep(0)  # the first takes its turn at once, five wait
    assert pacer.starts_within(2.0) == 15
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert pacer.waiting == 0

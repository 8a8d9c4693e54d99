"""Flow control for ResolveCustomer: find the account's unpublished quota and stay near it.

AWS publishes no request quota for ResolveCustomer and answers ``ThrottlingException``
above it, so the worker paces its calls at a rate it learns, the way TCP learns a
path's capacity:

- **Start.** ``start_rate`` calls/s, doubling every second (slow start), at most
  ``SLOW_START_GROWTH`` a window, until the first throttle or the ceiling.
- **Decrease at most once per window.** A window gathers the answers to the calls sent
  since the last decrease; it is mature once it holds ``WINDOW_CALLS`` answers over at
  least half a second and a round trip. The first throttle of a mature window decreases the
  rate, scaled by the window's throttled share (DCTCP's idea): to a margin below what
  got through, the margin growing with the share, never below ``MIN_BETA`` of what was
  sent (CUBIC's own beta). One throttle among 50 calls costs 4%; a flood costs 30% a
  window until the throttling stops. Answers to calls sent before a decrease are no new signal.
- **Increase with time.** After a decrease the rate climbs back along botocore's CUBIC
  curve (``botocore.retries.throttling.CubicCalculator``, the curve the SDK's adaptive
  retry mode uses), quickly and concavely to the plateau (what got through), at most
  ``WINDOW_GROWTH`` a window. It grows with the clock, not with successes, so a
  slowed-down worker recovers as fast as a busy one.
- **Probe above the plateau additively.** Above it the rate grows by
  ``PROBE_CALLS_PER_SECOND`` each second, the same amount for every worker: a larger
  share gains no faster than a smaller one, so workers sharing a quota converge to fair
  shares (AIMD's argument; a growth in proportion to the rate would keep whatever
  shares they had), and at a few calls per second a window that takes seconds to judge
  overshoots little. After ``PROBE_FAST_AFTER_SECONDS`` with no cut the probe grows by
  ``PROBE_GROWTH_PER_SECOND`` of the rate instead: capacity was freed (a worker stopped,
  the quota was raised) and is found within about half a minute.
- **A proven rate is trusted once.** After ``PROVEN_SECONDS`` with no cut, the lowest
  rate of the clean windows in that span is proven. Throttled there, the plateau stays
  at that rate for ``TRUST_EPISODE_SECONDS``, so the climb back is quick: a burst of
  throttles at a rate that served for long (tokens refused for themselves, a passing
  limit) costs seconds, not the additive probe back. Any cut after the episode voids
  the proof: the quota did change (another worker took a share), and only a new clean
  spell proves a rate.
- **Retries are no signal while first attempts speak.** Under an account quota a retry
  is throttled as often as a first call, so first attempts alone give the share; but
  a call refused for itself (one token throttled again and again) would otherwise fill
  the window with its retries the lower the rate went, and drive it to the floor. A
  window with fewer than ``MIN_FIRST_ATTEMPTS`` first attempts (every message in hand
  retrying) is judged by all its answers.
- **Leaving slow start** below the ceiling, the rate falls to what got through, less
  the margin, however deep that is (DCTCP's reading of the throttled share): a fleet
  started together overshoots a small quota several times over, and each worker's
  share of throttles says by how much. A window that says little (fewer
  than ``DEEP_EXIT_CALLS`` first attempts, or ``INFORMATIVE_SHARE`` of them throttled
  or more: the quota is lower, but how much lower?) halves the rate instead
  (``SLOW_START_BETA``, as TCP does there), and the next window judges again.
- **Ceiling and floor.** ``ceiling`` (``REGWORKER_RESOLVE_RATE_LIMIT``) is never
  exceeded; ``FLOOR`` keeps a trickle of calls going to notice recovery: even below one
  call per window's span a window is judged (``IDLE_TURNS``), so the rate climbs back.

Several workers sharing one account quota see about the same throttled share, so each
cuts by the same factor, and each probes up by the same calls/s: their rates converge
to a fair share, as AIMD's do. ``tests/flow_sim.py`` simulates it; the start rate's
default (``REGWORKER_RESOLVE_START_RATE``, 4/s) keeps a fleet started together from
overshooting a small quota many times over before the first window is judged, and
the deep exit from slow start takes most of what overshoot there is back in one window
(the quota's burst allowance, served in the first window, reads as having got through:
the next window takes the rest).

Why not botocore's adaptive mode (or aiobotocore's ``AsyncClientRateLimiter``) as is? It
decreases on every throttled answer, so a burst of throttles within one round trip
compounds to its floor (the collapse this module replaces); it has no ceiling and no
pacing until the first throttle. Its CUBIC curve is kept and reused here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
from botocore.retries.throttling import CubicCalculator

from worker.core.logs import log_outside_message
from worker.core.pacing import Turns

log = structlog.get_logger(__name__)

FLOOR: Final = 0.5
WINDOW_CALLS: Final = 20
# First attempts a window needs for its throttled share to be theirs alone.
MIN_FIRST_ATTEMPTS: Final = 3
WINDOW_MIN_SECONDS: Final = 0.5
# At low rates a window matures after this long, with however few answers it holds.
WINDOW_MAX_SECONDS: Final = 1.5
MARGIN_GAIN: Final = 1.0
MAX_MARGIN: Final = 0.2
MIN_BETA: Final = 0.7
# Leaving slow start, a window of at least DEEP_EXIT_CALLS first attempts with less
# than INFORMATIVE_SHARE of them throttled says how far over the quota the rate was:
# the cut follows it however deep. A window of fewer first attempts, or of throttles
# alone, says only that the quota is lower: the cut halves the rate (SLOW_START_BETA).
SLOW_START_BETA: Final = 0.5
INFORMATIVE_SHARE: Final = 0.9
DEEP_EXIT_CALLS: Final = 5
# A window restarts after a quiet spell this many turns of the pacer long (and at
# least WINDOW_MAX_SECONDS): below 1 / WINDOW_MAX_SECONDS calls/s every gap between
# calls is longer than a window, and a restart on each would leave no window to judge.
IDLE_TURNS: Final = 2.0
# Slow start grows by at most this much a window. Doubling (TCP's slow start) reached
# the default ceiling sooner, but three workers started together on a small quota
# overshot it further before the first cut, and their steady-state throttles rose
# (tests/flow_sim.py, 3 workers at 5/s, start 4/s, 40 seeds, throttles per success from
# 10% to 90% of 300 tokens as the bench counts them: 0.103 at 2 x, 0.098 at 1.75 x; at
# 1.5 x the mixed batch of bench/README.md drained in 1.27 x N / ceiling, 1.22 at 1.75).
SLOW_START_GROWTH: Final = 1.75
# Up to the last plateau, CUBIC's climb back grows by at most this much a window.
WINDOW_GROWTH: Final = 1.5
# Above the last plateau the rate probes by this many calls/s each second: the same
# for every worker, so a larger share gains no faster than a smaller one (AIMD's fair
# convergence), and slow enough that workers sharing a small quota overshoot it little
# before a window is judged.
PROBE_CALLS_PER_SECOND: Final = 0.1
# After this long without a cut, capacity has likely been freed (a worker stopped, the
# quota was raised): the probe grows by PROBE_GROWTH_PER_SECOND of the rate instead.
PROBE_FAST_AFTER_SECONDS: Final = 30.0
PROBE_GROWTH_PER_SECOND: Final = 0.1
# A rate that ran clean with no cut for this long is proven: throttled there, the
# controller trusts it for one episode and climbs straight back to it.
PROVEN_SECONDS: Final = 10.0
PROVEN_MATCH: Final = 0.9
TRUST_EPISODE_SECONDS: Final = 6.0
SLOW_START_DOUBLING_SECONDS: Final = 1.0
# botocore's CUBIC scale (0.4 calls/s per s^3) holds from the reference rate; below it
# the scale shrinks with the square root of the rate, so the concave climb back to the
# plateau takes a few seconds at any rate (with the full scale, a quota of a few calls/s
# would be regained within one window, before the window could judge it).
CUBIC_SCALE: Final = 0.4
CUBIC_REFERENCE_RATE: Final = 50.0
# Smoothing of the round-trip time, as TCP's SRTT (RFC 6298).
RTT_GAIN: Final = 0.125
PACER_TOLERANCE_SECONDS: Final = 0.001
# Rate increases are logged when the rate has grown this much since the last line.
LOG_GROWTH: Final = 1.25

Clock = Callable[[], float]


@dataclass
class Window:
    """Answers to calls sent since ``start``."""

    start: float
    start_rate: float
    last_send: float = -math.inf
    sent: int = 0
    calls: int = 0  # first attempts answered
    throttled: int = 0
    retries: int = 0  # retries answered
    retries_throttled: int = 0

    @property
    def answers(self) -> int:
        return self.calls + self.retries

    @property
    def throttled_share(self) -> float:
        """The share of first attempts throttled; with too few of them to tell (every
        message in hand retrying), the share of all answers."""
        if self.calls >= MIN_FIRST_ATTEMPTS:
            return self.throttled / self.calls
        return (self.throttled + self.retries_throttled) / max(1, self.answers)

    @property
    def any_throttled(self) -> bool:
        return self.throttled_share > 0


class FlowController:
    def __init__(
        self,
        ceiling: float,
        *,
        start_rate: float,
        clock: Clock = time.monotonic,
        name: str = "resolve_customer",
    ) -> None:
        self.ceiling = ceiling
        self.name = name
        self._clock = clock
        now = clock()
        self._floor = min(FLOOR, ceiling)
        self._start_rate = max(self._floor, min(start_rate, ceiling))
        self._slow_start_began: float | None = now
        self._cubic: CubicCalculator | None = None
        self._window = Window(start=now, start_rate=self._start_rate)
        self._last_decrease = -math.inf
        self._rtt = 0.0
        self._w_max = math.inf
        self._proven = 0.0
        self._trusted = False
        self._trust_until = -math.inf
        self._clean_since = now
        self._clean_rates: deque[tuple[float, float]] = deque()
        self.decreases = 0
        self.throttled = 0
        self._logged_rate = self._start_rate

    @property
    def rate(self) -> float:
        """The allowed call rate now, in calls per second."""
        now = self._clock()
        if self._slow_start_began is not None:
            doublings = (now - self._slow_start_began) / SLOW_START_DOUBLING_SECONDS
            rate = self._start_rate * 2 ** min(doublings, 64.0)
        elif self._cubic is not None:
            rate = self._cubic.success_received(now)
        else:
            rate = self.ceiling
        return max(self._floor, min(self.ceiling, rate, self._window_cap(now)))

    def _window_cap(self, now: float) -> float:
        """In slow start, ``SLOW_START_GROWTH`` a window. After it: up to the plateau,
        CUBIC's concave climb, at most ``WINDOW_GROWTH`` a window; above it, the probe's
        slope."""
        window = self._window
        if self._cubic is None:
            return window.start_rate * SLOW_START_GROWTH
        climb = window.start_rate * WINDOW_GROWTH
        slope = PROBE_CALLS_PER_SECOND
        if now - self._last_decrease >= PROBE_FAST_AFTER_SECONDS:
            slope = max(slope, PROBE_GROWTH_PER_SECOND * window.start_rate)
        probe = window.start_rate + slope * max(0.0, now - window.start)
        return max(probe, min(self._w_max, climb))

    def on_send(self) -> float:
        """Count a call going out now; returns its send time, for ``on_answer``."""
        now = self._clock()
        window = self._window
        gap = now - window.last_send
        # (The rate is read only past the shorter bound: on_send runs for every call.)
        if gap > WINDOW_MAX_SECONDS and gap > IDLE_TURNS / self.rate:
            # A window's clock runs while calls go out, not through idle time: after a
            # quiet spell it starts afresh, or its sent rate would be averaged over it.
            self._window = window = Window(start=now, start_rate=window.start_rate)
        window.last_send = now
        window.sent += 1
        return now

    def on_answer(self, sent_at: float, *, throttled: bool, retry: bool = False) -> None:
        """Record the answer to a call sent at ``sent_at`` (a ``clock()`` reading).
        ``retry``: the call retried a throttled or failed one."""
        now = self._clock()
        self._rtt += RTT_GAIN * ((now - sent_at) - self._rtt) if self._rtt else now - sent_at
        if throttled:
            self.throttled += 1
        if sent_at < self._last_decrease:
            return  # sent before the last decrease: already answered for
        window = self._window
        if retry:
            window.retries += 1
            window.retries_throttled += throttled
            if window.calls >= MIN_FIRST_ATTEMPTS:
                return  # first attempts speak for this window: they judge it
        else:
            window.calls += 1
            window.throttled += throttled
        if not self._mature(window, now):
            return
        if window.any_throttled:
            self._decrease(window, now)
        else:
            self._note_clean(window, now)
            self._window = Window(start=now, start_rate=self.rate)
            self._note_growth()

    def _note_clean(self, window: Window, now: float) -> None:
        """A clean window. Once nothing was cut for ``PROVEN_SECONDS``, the lowest rate of
        the clean windows in that time is proven: it ran clean all along."""
        if window.calls < MIN_FIRST_ATTEMPTS:
            return
        rates = self._clean_rates
        rates.append((now, min(self.rate, window.sent / max(now - window.start, 1e-3))))
        while rates[0][0] < now - PROVEN_SECONDS:
            rates.popleft()
        if now - self._clean_since >= PROVEN_SECONDS:
            lowest = min(rate for _, rate in rates)
            if lowest >= self._proven:
                self._proven, self._trusted = lowest, True

    def _mature(self, window: Window, now: float) -> bool:
        elapsed = now - window.start
        if elapsed >= WINDOW_MAX_SECONDS:
            return True
        return window.answers >= WINDOW_CALLS and elapsed >= max(WINDOW_MIN_SECONDS, self._rtt)

    def _decrease(self, window: Window, now: float) -> None:
        # As botocore does, start from the rate actually sent at: below the allowed
        # rate when the worker had less work than that. A window that is all throttles
        # says the quota is lower, not how much lower: hence the bound on one window's
        # cut (_beta).
        old = self.rate
        sent_rate = max(self._floor, min(old, window.sent / max(now - window.start, 1e-3)))
        share = window.throttled_share
        got_through = sent_rate * (1 - share)
        below = got_through * (1 - min(MAX_MARGIN, MARGIN_GAIN * share))
        new = max(self._floor, below, sent_rate * self._beta(old, window))
        # CUBIC's plateau (w_max) is the best guess of the quota: what got through. Its
        # curve starts at w_max * beta = new and climbs back with time. When even the
        # bounded cut stays above what got through, the curve starts flat at the new
        # rate instead: no quick climb back into the throttling.
        w_max = max(got_through, new, self._trusted_plateau(sent_rate, now))
        self._cubic = CubicCalculator(
            starting_max_rate=w_max,
            start_time=now,
            scale_constant=cubic_scale(w_max),
            beta=new / w_max,
        )
        self._w_max = w_max
        self._slow_start_began = None
        self._last_decrease = now
        self._window = Window(start=now, start_rate=new)
        self.decreases += 1
        self._logged_rate = new
        log_outside_message(
            log.info,
            "flow_rate",
            controller=self.name,
            old=round(old, 2),
            new=round(new, 2),
            why=f"throttled {window.throttled + window.retries_throttled} of {window.answers}"
            f" calls ({window.throttled} of {window.calls} first attempts) in the last window",
        )

    def _trusted_plateau(self, sent_rate: float, now: float) -> float:
        """The plateau the proven rate vouches for, or 0. Throttled at a rate that ran
        clean for long, the quota is unlikely to have moved: a burst of throttles (a
        retry storm elsewhere, a passing limit) costs one episode, not the slow probe
        back. Any cut after the episode voids the proof: the quota did change (another
        worker took a share), and only a new clean spell proves a rate again."""
        self._clean_since = now
        self._clean_rates.clear()
        if self._trusted and sent_rate >= PROVEN_MATCH * self._proven:
            self._trusted = False
            self._trust_until = now + TRUST_EPISODE_SECONDS
        if now < self._trust_until:
            return self._proven
        self._proven, self._trusted = 0.0, False
        return 0.0

    def _beta(self, rate: float, window: Window) -> float:
        """The deepest cut one window may make. Leaving slow start below the ceiling, the
        rate was growing fast: no bound while the window's first attempts say how far
        over it was, half (as TCP's) when they are few or nearly all throttled."""
        if self._slow_start_began is not None and rate < self.ceiling:
            share = window.throttled_share
            informative = window.calls >= DEEP_EXIT_CALLS and share < INFORMATIVE_SHARE
            return 0.0 if informative else SLOW_START_BETA
        return MIN_BETA

    def _note_growth(self) -> None:
        rate = self.rate
        at_ceiling = rate >= self.ceiling and self._logged_rate < self.ceiling
        if at_ceiling or rate >= self._logged_rate * LOG_GROWTH:
            why = "reached the ceiling" if at_ceiling else "no throttling: probing upwards"
            log_outside_message(
                log.info,
                "flow_rate",
                controller=self.name,
                old=round(self._logged_rate, 2),
                new=round(rate, 2),
                why=why,
            )
            self._logged_rate = rate


class Pacer:
    """Gives callers their turns one after another, each 1/rate after the last, at the
    rate current at that turn: a change of rate applies to the very next turn, not after
    a queue of turns already handed out at the old rate. Idle time banks no burst
    (``pacing.Turns``): a quiet minute is not a license for a minute's calls. A turn less than
    ``PACER_TOLERANCE_SECONDS`` away is taken at once: at high rates a timer per call
    would cost more than the call's own bookkeeping."""

    def __init__(self, controller: FlowController, clock: Clock = time.monotonic) -> None:
        self.controller = controller
        self._clock = clock
        self._turns = Turns()
        self._queue = asyncio.Lock()
        self.waiting = 0

    async def acquire(self) -> None:
        """Wait for this caller's turn. The caller reports the call itself with
        ``controller.on_send()`` right before sending it."""
        self.waiting += 1
        try:
            async with self._queue:
                while True:
                    spacing = 1.0 / self.controller.rate
                    due = self._turns.due(spacing)
                    now = self._clock()
                    if due - now < PACER_TOLERANCE_SECONDS:
                        break
                    await asyncio.sleep(due - now)
                self._turns.take(due, now, spacing)
        finally:
            self.waiting -= 1

    def starts_within(self, seconds: float) -> int:
        """How many more calls the current rate starts within ``seconds`` from now,
        beyond the callers already waiting for their turns."""
        # At least one: a ceiling under 1/seconds must still let a message in.
        return max(0, max(1, math.floor(seconds * self.controller.rate)) - self.waiting)


def cubic_scale(w_max: float) -> float:
    return CUBIC_SCALE * min(1.0, math.sqrt(w_max / CUBIC_REFERENCE_RATE))

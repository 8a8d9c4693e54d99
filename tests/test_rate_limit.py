"""The adaptive rate cap: halve on throttle down to a floor, creep back up on success to
the ceiling, and space ``acquire`` calls 1/rate apart. Timing bounds are loose on
purpose: lower bounds are what the limiter promises, upper bounds only catch a hang."""

from __future__ import annotations

import asyncio
import time

import pytest

from worker.rate_limit import AdaptiveRateLimiter


def test_starts_at_the_ceiling() -> None:
    limiter = AdaptiveRateLimiter(10)
    assert (limiter.rate, limiter.max_rate, limiter.min_rate) == (10, 10, 0.5)


def test_throttle_halves_down_to_the_floor() -> None:
    limiter = AdaptiveRateLimiter(16, min_rate=1.5)
    rates = []
    for _ in range(6):
        limiter.on_throttle()
        rates.append(limiter.rate)
    assert rates == [8, 4, 2, 1.5, 1.5, 1.5]


def test_floor_never_exceeds_the_ceiling() -> None:
    limiter = AdaptiveRateLimiter(0.2, min_rate=0.5)
    assert limiter.min_rate == 0.2
    limiter.on_throttle()
    assert limiter.rate == 0.2


def test_success_adds_a_fiftieth_of_the_ceiling_and_stops_at_it() -> None:
    limiter = AdaptiveRateLimiter(100)
    limiter.on_throttle()
    limiter.on_throttle()
    assert limiter.rate == 25
    limiter.on_success()
    assert limiter.rate == pytest.approx(27)
    for _ in range(100):
        limiter.on_success()
    assert limiter.rate == 100


def test_recovery_from_the_floor_is_gradual() -> None:
    limiter = AdaptiveRateLimiter(50, min_rate=1)
    for _ in range(10):
        limiter.on_throttle()
    assert limiter.rate == 1
    for _ in range(10):
        limiter.on_success()
    assert limiter.rate == pytest.approx(11)  # ten steps of 50/50, not a jump to 50


async def test_acquires_are_spaced_one_over_rate_apart() -> None:
    limiter = AdaptiveRateLimiter(100)
    started = time.monotonic()
    for _ in range(20):
        await limiter.acquire()
    elapsed = time.monotonic() - started
    assert elapsed >= 0.18  # 19 gaps of 10 ms after the first, immediate slot
    assert elapsed < 2.0


async def test_concurrent_acquires_share_the_rate() -> None:
    limiter = AdaptiveRateLimiter(50)
    started = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(11)))
    elapsed = time.monotonic() - started
    assert elapsed >= 0.19  # 10 gaps of 20 ms
    assert elapsed < 2.0


async def test_a_throttled_limiter_spaces_calls_wider() -> None:
    limiter = AdaptiveRateLimiter(200)
    limiter.on_throttle()
    limiter.on_throttle()  # 50/s
    started = time.monotonic()
    for _ in range(6):
        await limiter.acquire()
    assert time.monotonic() - started >= 0.095  # 5 gaps of 20 ms, not 5 ms


async def test_idle_time_does_not_bank_a_burst() -> None:
    limiter = AdaptiveRateLimiter(20)
    await limiter.acquire()
    await asyncio.sleep(0.3)  # six slots' worth of idle time
    started = time.monotonic()
    for _ in range(4):
        await limiter.acquire()
    assert time.monotonic() - started >= 0.14  # 3 gaps of 50 ms after the first

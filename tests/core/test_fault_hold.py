"""The fault hold on its own, with probes that are plain coroutines: it logs once, probes
with backoff until the dependency answers, clears by itself, and lets go at shutdown."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
import structlog
from botocore.exceptions import ClientError, EndpointConnectionError
from structlog.testing import capture_logs

from worker.core.errors import ConfigurationFault
from worker.core.fault_hold import FRESH_EVIDENCE_SECONDS, FaultHold
from worker.core.probes import Component


class Dependency:
    """A probe target that fails ``failures`` times, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def probe(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error


async def test_a_fault_holds_until_the_probe_answers_then_clears_by_itself() -> None:
    credentials = Dependency(2, ConfigurationFault("UnrecognizedClientException: expired"))
    hold = FaultHold({Component.RESOLVE_CUSTOMER: credentials.probe}, max_wait=1.0)
    with capture_logs() as logs:
        hold.report(Component.RESOLVE_CUSTOMER, credentials.error)
        hold.report(Component.RESOLVE_CUSTOMER, credentials.error)  # many messages, one fault
        assert hold.active
        expected = {"resolve_customer": "UnrecognizedClientException: expired"}
        assert hold.errors_by_component() == expected
        assert await asyncio.wait_for(hold.wait_clear(), timeout=5)
    assert not hold.active
    assert credentials.calls == 3  # at once, after 1 s, after 1 s more (capped)
    events = [(entry["event"], entry["log_level"]) for entry in logs]
    assert events == [("configuration_fault", "error"), ("fault_cleared", "info")]
    await hold.close()


async def test_a_fault_is_logged_as_the_dependencys_not_the_failing_messages() -> None:
    """The message whose call failed first is in the log context when it reports the
    fault; the fault's lines (raised, still holding, cleared) must not carry its id."""
    table = Dependency(3, ConfigurationFault("AccessDeniedException: no"))
    hold = FaultHold({Component.IDEMPOTENCY_TABLE: table.probe}, max_wait=0.05, report_every=0.05)
    with (
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
        structlog.contextvars.bound_contextvars(message_id="m-1", token="abc123"),
    ):
        hold.report(Component.IDEMPOTENCY_TABLE, table.error)
        assert await asyncio.wait_for(hold.wait_clear(), timeout=5)
    events = {entry["event"] for entry in logs}
    assert events >= {"configuration_fault", "fault_cleared"}
    assert all("message_id" not in entry and "token" not in entry for entry in logs)
    await hold.close()


async def test_an_outage_is_told_apart_from_a_configuration_fault() -> None:
    sink = Dependency(0, EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    hold = FaultHold({Component.SINK: sink.probe}, max_wait=1.0)
    with capture_logs() as logs:
        hold.report(Component.SINK, sink.error)
        assert await asyncio.wait_for(hold.wait_clear(), timeout=5)
    assert logs[0]["event"] == "outage"
    assert logs[0]["component"] == "sink"
    await hold.close()


async def test_a_long_fault_is_reported_again_with_the_time_elapsed() -> None:
    table = Dependency(1000, ConfigurationFault("AccessDeniedException: no"))
    hold = FaultHold({Component.IDEMPOTENCY_TABLE: table.probe}, max_wait=0.05, report_every=0.2)
    with capture_logs() as logs:
        hold.report(Component.IDEMPOTENCY_TABLE, table.error)
        await asyncio.sleep(0.7)
    reports = [entry for entry in logs if entry["event"] == "configuration_fault"]
    assert 3 <= len(reports) <= 5
    assert "elapsed_seconds" not in reports[0]
    assert all("elapsed_seconds" in entry for entry in reports[1:])
    assert hold.active
    await hold.close()


async def test_a_real_call_that_gets_through_clears_the_fault() -> None:
    sink = Dependency(1000, ConfigurationFault("AuthorizationError: probe denied"))
    hold = FaultHold({Component.SINK: sink.probe}, max_wait=10.0)
    hold.report(Component.SINK, sink.error)
    await asyncio.sleep(0.05)
    hold.succeeded(Component.SINK)
    assert not hold.active
    assert await asyncio.wait_for(hold.wait_clear(), timeout=1)
    await hold.close()


async def test_shutdown_lets_every_waiter_go() -> None:
    queue = Dependency(1000, ConfigurationFault("AccessDenied: no"))
    hold = FaultHold({Component.SOURCE_QUEUE: queue.probe}, max_wait=10.0)
    hold.report(Component.SOURCE_QUEUE, queue.error)
    waiter = asyncio.create_task(hold.wait_clear())
    sleeper = asyncio.create_task(hold.sleep(60))
    await asyncio.sleep(0.05)
    hold.stop()
    assert await asyncio.wait_for(waiter, timeout=1) is False
    assert await asyncio.wait_for(sleeper, timeout=1) is False
    await hold.close()
    hold.report(Component.SINK, queue.error)  # after stop: ignored, nothing to probe
    assert not hold.holds_for(Component.SINK)


@pytest.mark.parametrize("seconds", [0.0, 0.05])
async def test_sleep_in_hand_returns_true_when_not_stopping(seconds: float) -> None:
    hold = FaultHold({}, max_wait=1.0)
    assert await hold.sleep(seconds) is True


async def test_a_fault_back_within_a_minute_is_logged_at_warning_not_error() -> None:
    sink = Dependency(0, EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    hold = FaultHold({Component.SINK: sink.probe}, max_wait=1.0)
    with capture_logs() as logs:
        for _ in range(3):  # a flapping sink: fault, cleared, fault again
            hold.report(Component.SINK, sink.error)
            assert await asyncio.wait_for(hold.wait_clear(), timeout=5)
    levels = [entry["log_level"] for entry in logs if entry["event"] == "outage"]
    assert levels == ["error", "warning", "warning"]
    await hold.close()


async def test_probe_passes_runs_the_probe_once_without_holding() -> None:
    working = Dependency(0, ConfigurationFault("unused"))
    broken = Dependency(1000, ConfigurationFault("AccessDenied: no"))
    hold = FaultHold(
        {Component.SINK: working.probe, Component.DEAD_LETTER_QUEUE: broken.probe},
        max_wait=1.0,
    )
    now = time.monotonic()
    assert await hold.probe_passes(Component.SINK, failed_at=now)
    assert not await hold.probe_passes(Component.DEAD_LETTER_QUEUE, failed_at=now)
    assert not hold.active
    assert (working.calls, broken.calls) == (1, 1)
    hold.report(Component.SINK, working.error)
    # held: not working, no probe spent
    assert not await hold.probe_passes(Component.SINK, failed_at=now)
    await hold.close()


async def test_another_call_through_after_the_failure_spares_the_probe() -> None:
    """A call of another message that gets through after this one failed is the
    evidence the probe would fetch: no probe is spent. One that got through before the
    failure is not (an outage's first failures come right after the last successes):
    after waiting FRESH_EVIDENCE_SECONDS for better, the probe decides."""
    resolve = Dependency(0, ConfigurationFault("unused"))
    hold = FaultHold({Component.RESOLVE_CUSTOMER: resolve.probe}, max_wait=1.0)
    hold.worked(Component.RESOLVE_CUSTOMER)
    with hold.calling(Component.RESOLVE_CUSTOMER):  # another message's call under way
        failed_at = time.monotonic()
        started = time.monotonic()
        assert await hold.probe_passes(Component.RESOLVE_CUSTOMER, failed_at=failed_at)
        assert (resolve.calls, hold.probes_spared) == (1, 0)
        assert time.monotonic() - started >= FRESH_EVIDENCE_SECONDS
        failed_at = time.monotonic()
        asyncio.get_running_loop().call_later(0.1, hold.worked, Component.RESOLVE_CUSTOMER)
        assert await hold.probe_passes(Component.RESOLVE_CUSTOMER, failed_at=failed_at)
        assert (resolve.calls, hold.probes_spared) == (1, 1)
    await hold.close()


async def test_failures_while_a_probe_is_in_flight_share_its_verdict() -> None:
    """Tokens refused at about the same time ask the same question: one probe call
    answers them all, and the next failure after it asks again."""
    calls = 0

    async def slow_probe() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.5)  # in flight while all three failures come

    hold = FaultHold({Component.RESOLVE_CUSTOMER: slow_probe}, max_wait=1.0)

    async def failure(delay: float) -> bool:
        await asyncio.sleep(delay)
        return await hold.probe_passes(Component.RESOLVE_CUSTOMER, failed_at=time.monotonic())

    with hold.calling(Component.RESOLVE_CUSTOMER):  # calls under way, none answered
        verdicts = await asyncio.gather(*(failure(0.1 * n) for n in range(3)))
    assert verdicts == [True, True, True]
    assert calls == 1
    assert await hold.probe_passes(Component.RESOLVE_CUSTOMER, failed_at=time.monotonic())
    assert calls == 2
    await hold.close()


async def test_a_probe_sent_before_a_failure_does_not_answer_for_it() -> None:
    calls = 0

    async def slow_probe() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(1.0)

    hold = FaultHold({Component.RESOLVE_CUSTOMER: slow_probe}, max_wait=1.0)
    first = asyncio.create_task(
        hold.probe_passes(Component.RESOLVE_CUSTOMER, failed_at=time.monotonic())
    )
    await asyncio.sleep(FRESH_EVIDENCE_SECONDS + 0.1)  # its probe is in flight now
    assert calls == 1
    later = hold.probe_passes(Component.RESOLVE_CUSTOMER, failed_at=time.monotonic())
    assert await later
    assert await first
    assert calls == 2
    await hold.close()


async def test_stopping_releases_a_message_waiting_for_a_probe() -> None:
    """At shutdown the probe is cancelled: its waiters hear 'not working' (and then find
    the hold stopping), not a CancelledError of a task nobody cancelled."""

    async def endless_probe() -> None:
        await asyncio.sleep(60)

    hold = FaultHold({Component.SINK: endless_probe}, max_wait=1.0)
    waiter = asyncio.create_task(hold.probe_passes(Component.SINK, failed_at=time.monotonic()))
    await asyncio.sleep(FRESH_EVIDENCE_SECONDS + 0.1)
    hold.stop()
    assert await asyncio.wait_for(waiter, timeout=1) is False
    assert not await hold.wait_clear()
    await hold.close()


async def test_the_probe_runs_outside_the_failing_message_s_log_context() -> None:
    """The shared probe answers for several messages: its logs are none of theirs."""
    seen: list[dict[str, object]] = []

    async def probe() -> None:
        seen.append(structlog.contextvars.get_contextvars())

    hold = FaultHold({Component.SINK: probe}, max_wait=1.0)
    with structlog.contextvars.bound_contextvars(message_id="m-1", token="abc"):
        assert await hold.probe_passes(Component.SINK, failed_at=time.monotonic())
    assert seen == [{}]
    await hold.close()


async def test_no_probe_starts_once_the_worker_stops() -> None:
    sink = Dependency(0, ConfigurationFault("unused"))
    hold = FaultHold({Component.SINK: sink.probe}, max_wait=1.0)
    hold.stop()
    assert not await hold.probe_passes(Component.SINK, failed_at=time.monotonic())
    assert sink.calls == 0
    await hold.close()


async def test_a_passing_error_after_a_configuration_fault_is_probed_again_soon() -> None:
    """The credentials work again but the probe met a 5xx: the next probe comes within a
    second, not after the backoff built up during the fault (the outage run saw a
    repaired worker wait a minute for it)."""
    answers: list[Exception | None] = [
        ConfigurationFault("UnrecognizedClientException: expired"),
        ConfigurationFault("UnrecognizedClientException: expired"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        None,
    ]

    async def probe() -> None:
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    hold = FaultHold({Component.RESOLVE_CUSTOMER: probe}, max_wait=30.0)
    hold.report(Component.RESOLVE_CUSTOMER, ConfigurationFault("UnrecognizedClientException"))
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(hold.wait_clear(), timeout=15)
    # Waits 0, 1, 2 (backoff), then 1 after the passing error: 4 s, not 0 + 1 + 2 + 4.
    assert asyncio.get_running_loop().time() - started < 5.5
    await hold.close()


def service_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"{code} here"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "ResolveCustomer")


@pytest.mark.parametrize(
    ("error", "calls", "passes"),
    [
        # a passing 5xx of the probe's own: tried once more, and it gets through
        (service_error("InternalServiceErrorException", 500), 2, True),
        # a refusal, or nothing answering: no second try, the worker holds
        (service_error("AccessDeniedException", 403), 1, False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), 1, False),
    ],
)
async def test_a_probe_that_meets_a_passing_error_is_tried_once_more(
    error: Exception, calls: int, passes: bool
) -> None:
    resolve = Dependency(1, error)
    hold = FaultHold({Component.RESOLVE_CUSTOMER: resolve.probe}, max_wait=1.0)
    passed = await hold.probe_passes(Component.RESOLVE_CUSTOMER, failed_at=-math.inf)
    assert (resolve.calls, passed) == (calls, passes)
    await hold.close()

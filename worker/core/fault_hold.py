"""The fault hold: while a dependency is broken, stop taking work and keep what is in hand.

A configuration fault (credentials, permissions, a missing resource) or an outage of the
sink, the DLQ or the idempotency table is no message's fault, and it lasts minutes to
hours. Handing messages back while it lasts would spend their receive counts until the
queue's redrive policy moves them to the DLQ with no reason. So instead:

- the receive loop stops taking messages (``wait_clear``);
- the messages in hand stay in hand, their visibility extended by the heartbeat, each
  waiting at the step that failed;
- one probe task per broken dependency runs its cheap call (``worker.core.probes``): at once,
  then after 1, 2, 4 ... seconds up to ``max_wait``;
- when the probe answers, or a message's own call gets through (``succeeded``), the
  dependency is clear; when none is left, everything resumes by itself.

A probe can answer while the real call still fails (an IAM policy that allows
``GetTopicAttributes`` but not ``Publish``): then the messages back off in hand
themselves (``sleep``), still kept, until their own call gets through.

The first failure is logged once at ERROR (``configuration_fault``, or ``outage`` for a
dependency that does not answer), then again every ``report_every`` seconds with the
time elapsed, and ``fault_cleared`` when it is over. ``active`` is the state readiness
reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import structlog
from botocore.exceptions import ClientError

from worker.core.errors import ConfigurationFault, TransientError
from worker.core.faults import classify_aws_error, describe
from worker.core.logs import log_outside_message
from worker.core.probes import Component, Probe

log = structlog.get_logger(__name__)

FIRST_PROBE_WAIT: Final = 1.0
REPORT_EVERY_SECONDS: Final = 60.0
PROBE_TIMEOUT_SECONDS: Final = 10.0
# A call of another message that gets through within this long after a failure shows
# the dependency works as well as a probe would.
FRESH_EVIDENCE_SECONDS: Final = 0.5
EVIDENCE_POLL_SECONDS: Final = 0.05
PROBE_RETRY_SECONDS: Final = 0.5


@dataclass
class Fault:
    component: Component
    kind: str  # "configuration_fault" or "outage"
    error: str
    since: float
    reported: float


@dataclass(frozen=True)
class ProbeRun:
    started: float
    verdict: asyncio.Task[bool]


def is_passing_error(error: BaseException) -> bool:
    """An answer of the service that says nothing about the others' calls (a 5xx, a
    throttle): a probe that met one is tried once more before the worker holds for it."""
    return isinstance(error, ClientError) and isinstance(classify_aws_error(error), TransientError)


def fault_kind(error: BaseException) -> str:
    classified = classify_aws_error(error) if not isinstance(error, ConfigurationFault) else error
    return "configuration_fault" if isinstance(classified, ConfigurationFault) else "outage"


class FaultHold:
    def __init__(
        self,
        probes: Mapping[Component, Probe],
        *,
        max_wait: float,
        report_every: float = REPORT_EVERY_SECONDS,
    ) -> None:
        self._probes = probes
        self._max_wait = max_wait
        self._report_every = report_every
        self._faults: dict[Component, Fault] = {}
        self._probing: dict[Component, asyncio.Task[None]] = {}
        self._probe_runs: dict[Component, ProbeRun] = {}
        self._probe_tasks: set[asyncio.Task[bool]] = set()
        self._clear = asyncio.Event()
        self._clear.set()
        self._stopping = asyncio.Event()
        self._last_error_log: dict[Component, float] = {}
        self._worked_at: dict[Component, float] = {}
        self._calling: Counter[Component] = Counter()
        self.holds = 0
        self.probes_spared = 0

    @property
    def active(self) -> bool:
        return bool(self._faults)

    def holds_for(self, component: Component) -> bool:
        return component in self._faults

    def errors_by_component(self) -> dict[str, str]:
        """The dependencies held for, with their last error: for readiness and logs."""
        return {fault.component.value: fault.error for fault in self._faults.values()}

    def report(self, component: Component, error: BaseException) -> None:
        """A call to ``component`` failed in a way that is not the message's fault."""
        if self._stopping.is_set():
            return
        if (fault := self._faults.get(component)) is not None:
            fault.error = describe(error)
            return
        now = time.monotonic()
        fault = Fault(component, fault_kind(error), describe(error), since=now, reported=now)
        self._faults[component] = fault
        self._clear.clear()
        self.holds += 1
        # A fault back within a minute of the last one is the same trouble: ERROR once.
        recent = now - self._last_error_log.get(component, -REPORT_EVERY_SECONDS) < (
            self._report_every
        )
        if not recent:
            self._last_error_log[component] = now
        # Out of the failing message's context: the fault, its progress reports and its
        # clearing are the dependency's, not that message's.
        log_outside_message(
            log.warning if recent else log.error,
            fault.kind,
            component=component.value,
            error=fault.error,
            action="receiving stopped; messages in hand are kept and retried when"
            f" {component.value} answers again (probing with a cheap call)",
        )
        self._probing[component] = asyncio.create_task(
            self._recover(fault), name=f"probe-{component.value}", context=contextvars.Context()
        )

    def succeeded(self, component: Component) -> None:
        """A real call to ``component`` got through: whatever the probe says, it works."""
        fault = self._faults.get(component)
        if fault is not None:
            self._probing[component].cancel()
            self._cleared(fault)

    def worked(self, component: Component) -> None:
        """A call to ``component`` got through just now (any message's)."""
        self._worked_at[component] = time.monotonic()

    def calling(self, component: Component) -> Calling:
        """A message's call to ``component`` is under way (or waiting for its turn): its
        answer may be the evidence another message's failure waits for."""
        return Calling(self._calling, component)

    async def probe_passes(self, component: Component, *, failed_at: float) -> bool:
        """Does ``component`` work for others, for a call that failed at ``failed_at``?
        A component already held does not. When another call to it gets through after
        that failure, it does, without a probe: that answer is the evidence the probe
        would fetch, and it costs the account's quota nothing (a probe of ResolveCustomer
        is a call like any other, and it can meet a passing error of its own)."""
        if component in self._faults or self._stopping.is_set():
            return False
        if await self._answered_since(component, failed_at):
            self.probes_spared += 1
            return True
        verdict = self._probe_run(component, failed_at)
        try:
            return await asyncio.shield(verdict)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if verdict.cancelled() and task is not None and not task.cancelling():
                return False  # stopped: the caller finds the hold stopping, gives it back
            raise

    def _probe_run(self, component: Component, failed_at: float) -> asyncio.Task[bool]:
        """The latest probe of ``component`` if it started after ``failed_at`` (failures
        waiting for evidence together take one verdict: the same question, asked of the
        same quota), else a new one. A probe sent before the failure is no evidence, as
        a success from before it is not. The probe runs in a context of its own: its
        logs and spans are no message's."""
        run = self._probe_runs.get(component)
        if run is None or run.started < failed_at:
            task = asyncio.get_running_loop().create_task(
                self._probe_verdict(component), context=contextvars.Context()
            )
            run = ProbeRun(time.monotonic(), task)
            self._probe_runs[component] = run
            self._probe_tasks.add(task)
            task.add_done_callback(self._probe_tasks.discard)
        return run.verdict

    async def _probe_verdict(self, component: Component) -> bool:
        failure = await self._probe_failure(component)
        if failure is not None and is_passing_error(failure):
            await asyncio.sleep(PROBE_RETRY_SECONDS)
            failure = await self._probe_failure(component)
        return failure is None

    async def _probe_failure(self, component: Component) -> Exception | None:
        """What the probe of ``component`` failed with; None when it got through."""
        try:
            await asyncio.wait_for(self._probes[component](), timeout=PROBE_TIMEOUT_SECONDS)
        except Exception as error:  # any failure means: not working
            return error
        return None

    async def _answered_since(self, component: Component, failed_at: float) -> bool:
        """Whether a call to ``component`` gets through after ``failed_at``, waiting up to
        ``FRESH_EVIDENCE_SECONDS`` for one: under load one comes within milliseconds;
        in an outage none does, and the probe decides. With no other call under way
        none can come: the probe decides at once."""
        deadline = failed_at + FRESH_EVIDENCE_SECONDS
        while self._worked_at.get(component, -math.inf) <= failed_at:
            left = deadline - time.monotonic()
            if left <= 0 or not self._calling[component]:
                return False
            await asyncio.sleep(min(EVIDENCE_POLL_SECONDS, left))
        return True

    async def wait_clear(self) -> bool:
        """Wait until nothing is held; False when the worker stops first."""
        await self._clear.wait()
        return not self._stopping.is_set()

    async def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` in hand; False (at once) when the worker stops first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        return not self._stopping.is_set()

    def stop(self) -> None:
        """Shutdown: release every waiter (they hand their messages back) and stop probing."""
        self._stopping.set()
        self._clear.set()
        for task in [*self._probing.values(), *self._probe_tasks]:
            task.cancel()

    async def close(self) -> None:
        self.stop()
        await asyncio.gather(*self._probing.values(), *self._probe_tasks, return_exceptions=True)

    async def _recover(self, fault: Fault) -> None:
        wait = 0.0
        while True:
            await asyncio.sleep(wait)
            error = await self._probe_failure(fault.component)
            if error is None:
                break
            # Not working yet, whatever the error says.
            fault.error = describe(error)
            self._report_progress(fault)
            if fault.kind == "configuration_fault" and fault_kind(error) == "outage":
                # The configuration answer is gone and a passing one (a 5xx, a
                # timeout) took its place: likely fixed, so look again soon.
                wait = FIRST_PROBE_WAIT
            else:
                wait = min(self._max_wait, max(FIRST_PROBE_WAIT, wait * 2))
        self._cleared(fault)

    def _cleared(self, fault: Fault) -> None:
        if self._faults.get(fault.component) is not fault:
            return  # a newer fault of the same component: not this one's to clear
        del self._faults[fault.component]
        del self._probing[fault.component]
        log_outside_message(
            log.info,
            "fault_cleared",
            component=fault.component.value,
            after_seconds=round(time.monotonic() - fault.since, 1),
        )
        if not self._faults:
            self._clear.set()

    def _report_progress(self, fault: Fault) -> None:
        now = time.monotonic()
        if now - fault.reported < self._report_every:
            return
        fault.reported = now
        log.error(
            fault.kind,
            component=fault.component.value,
            error=fault.error,
            elapsed_seconds=round(now - fault.since),
            action="still holding: receiving stopped, messages in hand kept",
        )


class Calling:
    """``FaultHold.calling``'s count for the block. Three a message: a class, as a
    generator context manager costs twice as much."""

    __slots__ = ("_component", "_counts")

    def __init__(self, counts: Counter[Component], component: Component) -> None:
        self._counts = counts
        self._component = component

    def __enter__(self) -> None:
        self._counts[self._component] += 1

    def __exit__(self, *_: object) -> None:
        self._counts[self._component] -= 1

"""The periodic one-line ``progress`` log and, with ``REGWORKER_METRICS=emf``, the same
figures as CloudWatch Embedded Metric Format documents on stdout (for ECS users without
Prometheus: the awslogs driver ships the line, CloudWatch turns it into metrics)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping
from typing import Final, TextIO

import structlog

from worker.core.metrics import Watched
from worker.core.tally import Outcome

log = structlog.get_logger(__name__)

EMF_NAMESPACE: Final = "regworker"
# EMF metric name -> unit, in the order the document lists them.
EMF_UNITS: Final = {
    "MessagesReceived": "Count",
    "MessagesPublished": "Count",
    "MessagesDeadLettered": "Count",
    "MessagesRequeued": "Count",
    "ResolveThrottled": "Count",
    "CallFailures": "Count",
    "MessagesInFlight": "Count",
    "MessagesHeld": "Count",
    "ResolveRateLimit": "Count/Second",
}


def snapshot(worker: Watched) -> dict[str, float]:
    """Counts since start and gauges now, by EMF name."""
    tally = worker.tally
    return {
        "MessagesReceived": tally.received,
        "MessagesPublished": tally.outcomes[Outcome.PUBLISHED.value],
        "MessagesDeadLettered": tally.outcomes[Outcome.DEAD_LETTERED.value],
        "MessagesRequeued": tally.outcomes[Outcome.REQUEUED.value],
        "ResolveThrottled": tally.resolve_results["throttled"],
        "CallFailures": sum(tally.call_failures.values()),
        "MessagesInFlight": worker.heartbeat.in_hand,
        "MessagesHeld": tally.held,
        "ResolveRateLimit": round(worker.controller.rate, 2),
    }


GAUGES: Final = frozenset({"MessagesInFlight", "MessagesHeld", "ResolveRateLimit"})


def since(now: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    """Counters as the change since ``before``; gauges as they are now."""
    return {
        name: value if name in GAUGES else value - before.get(name, 0)
        for name, value in now.items()
    }


def emf_document(values: Mapping[str, float], queue: str, at: float) -> str:
    """One EMF line: the values, with the queue's name as the one dimension."""
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(at * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": EMF_NAMESPACE,
                        "Dimensions": [["Queue"]],
                        "Metrics": [{"Name": name, "Unit": EMF_UNITS[name]} for name in values],
                    }
                ],
            },
            "Queue": queue,
            **values,
        },
        separators=(",", ":"),
    )


async def report_progress(
    worker: Watched,
    interval: float,
    *,
    emf_queue: str | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Every ``interval`` seconds until cancelled: the ``progress`` line, and with
    ``emf_queue`` the EMF document of the interval."""
    before = snapshot(worker)
    while True:
        await asyncio.sleep(interval)
        now = snapshot(worker)
        interval_values = since(now, before)
        log.info(
            "progress",
            received=interval_values["MessagesReceived"],
            published=interval_values["MessagesPublished"],
            dead_lettered=interval_values["MessagesDeadLettered"],
            per_second=round(interval_values["MessagesReceived"] / interval, 2),
            in_flight=now["MessagesInFlight"],
            held=now["MessagesHeld"],
            resolve_rate=now["ResolveRateLimit"],
            interval_seconds=interval,
        )
        if emf_queue is not None:
            print(emf_document(interval_values, emf_queue, time.time()), file=out, flush=True)
        before = now

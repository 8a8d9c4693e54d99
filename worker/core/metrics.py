"""The worker's Prometheus metrics: what it received, how each message ended, how
ResolveCustomer answered, and the state of its flow control and fault holds.

Names follow Prometheus conventions: the ``regworker_`` prefix, ``_total`` on counters,
``_seconds`` on durations. Counts and gauges are read at scrape time from the worker's
own tallies (``WorkerCollector``): a message costs no metric update beyond the integer
the tally adds. Only the two latency histograms are observed as things happen. The
metrics live on a registry of their own, built once at the edge and passed in, so tests
and two workers in one process never share counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from worker.core.errors import DeadLetterReason
from worker.core.fault_hold import FaultHold
from worker.core.flow_control import FlowController
from worker.core.heartbeat import VisibilityHeartbeat
from worker.core.probes import Component
from worker.core.tally import Outcome, Tally

# ResolveCustomer answers in tens of milliseconds; retries and pacing stretch a message's
# time in hand to seconds.
RESOLVE_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MESSAGE_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class Watched:
    """The live parts of a running worker the collector reads."""

    tally: Tally
    heartbeat: VisibilityHeartbeat
    hold: FaultHold
    controller: FlowController


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.resolve_seconds = Histogram(
            "regworker_resolve_duration_seconds",
            "One ResolveCustomer call, sent to answered.",
            buckets=RESOLVE_BUCKETS,
            registry=self.registry,
        )
        self.message_seconds = Histogram(
            "regworker_message_duration_seconds",
            "A message from pickup (received) to its outcome.",
            buckets=MESSAGE_BUCKETS,
            registry=self.registry,
        )
        self.build = Info("regworker_build", "The worker's version.", registry=self.registry)
        self.collector = WorkerCollector()
        self.registry.register(self.collector)

    def watch(self, worker: Watched) -> None:
        self.collector.worker = worker

    def names(self) -> frozenset[str]:
        """Every sample name this registry exports (``regworker_..._total``,
        ``..._bucket``, ``..._info`` ...), for checking dashboards and alerts."""
        families = [*self.collector.describe(), *self.registry.collect()]
        return frozenset(sample_names(families))


class WorkerCollector(Collector):
    """Counts and gauges read from the watched worker at scrape time (from the HTTP
    server's thread: every read is a copy or a single lookup)."""

    def __init__(self) -> None:
        self.worker: Watched | None = None

    def describe(self) -> Iterable[Metric]:
        return list(self._families(None))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self.worker))

    def _families(self, worker: Watched | None) -> Iterator[Metric]:
        tally = worker.tally if worker else Tally()
        received = CounterMetricFamily(
            "regworker_messages_received", "Messages received from the source queue."
        )
        received.add_metric([], tally.received)
        yield received
        yield labelled(
            CounterMetricFamily(
                "regworker_messages_settled",
                "Messages handled, by outcome: published, dead_lettered, duplicate (gone"
                " from the queue); requeued, kept (still on it); copy_in_hand (delivered"
                " again while in hand or just after it was settled, not handled twice).",
                labels=["outcome"],
            ),
            tally.outcomes,
            [outcome.value for outcome in Outcome],
        )
        yield labelled(
            CounterMetricFamily(
                "regworker_dead_letters", "Messages sent to the DLQ, by reason.", labels=["reason"]
            ),
            tally.dead_letters,
            [reason.value for reason in DeadLetterReason],
        )
        yield labelled(
            CounterMetricFamily(
                "regworker_resolve_calls",
                "ResolveCustomer calls by result: success, throttled, timeout,"
                " connection_error, or the error code answered.",
                labels=["result"],
            ),
            tally.resolve_results,
            ["success", "throttled"],
        )
        yield labelled(
            CounterMetricFamily(
                "regworker_call_failures",
                "Failed calls the worker retried or held on, by dependency.",
                labels=["component"],
            ),
            tally.call_failures,
            [component.value for component in Component],
        )
        yield labelled(
            CounterMetricFamily(
                "regworker_idempotency_outcomes",
                "Idempotency-table answers: claimed, done (a duplicate), busy, completed,"
                " released.",
                labels=["outcome"],
            ),
            tally.idempotency,
            [],
        )
        yield from self._gauges(worker, tally)

    def _gauges(self, worker: Watched | None, tally: Tally) -> Iterator[Metric]:
        extensions = CounterMetricFamily(
            "regworker_heartbeat_extensions", "Visibility timeouts extended for messages in hand."
        )
        extensions.add_metric([], worker.heartbeat.extensions if worker else 0)
        yield extensions
        in_flight = GaugeMetricFamily("regworker_messages_in_flight", "Messages in hand now.")
        in_flight.add_metric([], worker.heartbeat.in_hand if worker else 0)
        yield in_flight
        held = GaugeMetricFamily(
            "regworker_messages_held", "Messages in hand waiting out a fault hold."
        )
        held.add_metric([], tally.held)
        yield held
        rate = GaugeMetricFamily(
            "regworker_resolve_rate_limit",
            "The flow controller's allowed ResolveCustomer rate, calls per second.",
        )
        rate.add_metric([], worker.controller.rate if worker else 0.0)
        yield rate
        hold = GaugeMetricFamily(
            "regworker_fault_hold",
            "1 while a fault hold is on for the component, else 0.",
            labels=["component"],
        )
        for component in Component:
            held_for = worker is not None and worker.hold.holds_for(component)
            hold.add_metric([component.value], 1.0 if held_for else 0.0)
        yield hold


def labelled(
    family: CounterMetricFamily, counts: Mapping[str, int], always: list[str]
) -> CounterMetricFamily:
    """One sample per label value counted, and a zero for each expected one not yet seen
    (so rate() and dashboards see the series from the start)."""
    values = dict(counts)  # a copy: the event loop may add a key meanwhile
    for name in always:
        values.setdefault(name, 0)
    for name, count in sorted(values.items()):
        family.add_metric([name], count)
    return family


# _created samples are left out: dashboards and alerts have no use for them.
SUFFIXES: Final = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "info": ("_info",),
}


def sample_names(families: Iterable[Metric]) -> Iterable[str]:
    """Sample names by family type: a labelled family with no child yet has no samples."""
    for family in families:
        yield from (family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))

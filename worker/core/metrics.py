"""The worker's Prometheus metrics: what it received, how each message ended, how
ResolveCustomer answered, and the state of its flow control and fault holds.

Names follow Prometheus conventions: the ``regworker_`` prefix, ``_total`` on counters
(prometheus-client adds it), ``_seconds`` on durations. The metrics live on a registry of
their own, built once at the edge and passed in, so tests and two workers in one process
never share counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics_core import Metric

# ResolveCustomer answers in tens of milliseconds; retries and pacing stretch a message's
# time in hand to seconds.
RESOLVE_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MESSAGE_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        on = self.registry
        self.received = Counter(
            "regworker_messages_received", "Messages received from the source queue.", registry=on
        )
        self.settled = Counter(
            "regworker_messages_settled",
            "Messages handled, by outcome: published, dead_lettered, duplicate (settled);"
            " requeued, kept (still on the queue).",
            ["outcome"],
            registry=on,
        )
        self.dead_letters = Counter(
            "regworker_dead_letters",
            "Messages sent to the DLQ, by reason.",
            ["reason"],
            registry=on,
        )
        self.resolve_calls = Counter(
            "regworker_resolve_calls",
            "ResolveCustomer calls by result: success, throttled, server_error, timeout,"
            " connection_error, or the rejection's error code.",
            ["result"],
            registry=on,
        )
        self.resolve_seconds = Histogram(
            "regworker_resolve_duration_seconds",
            "One ResolveCustomer call, sent to answered.",
            buckets=RESOLVE_BUCKETS,
            registry=on,
        )
        self.message_seconds = Histogram(
            "regworker_message_duration_seconds",
            "A message from pickup (received) to settled or handed back.",
            buckets=MESSAGE_BUCKETS,
            registry=on,
        )
        self.in_flight = Gauge("regworker_messages_in_flight", "Messages in hand now.", registry=on)
        self.held = Gauge(
            "regworker_messages_held", "Messages in hand waiting out a fault hold.", registry=on
        )
        self.resolve_rate = Gauge(
            "regworker_resolve_rate_limit",
            "The flow controller's allowed ResolveCustomer rate, calls per second.",
            registry=on,
        )
        self.fault_hold = Gauge(
            "regworker_fault_hold",
            "1 while a fault hold is on for the component, else 0.",
            ["component"],
            registry=on,
        )
        self.call_failures = Counter(
            "regworker_call_failures",
            "Failed calls the worker retries or holds on, by step: receive, publish,"
            " dead_letter, delete.",
            ["step"],
            registry=on,
        )
        self.heartbeat_extensions = Counter(
            "regworker_heartbeat_extensions",
            "Visibility timeouts extended for messages in hand.",
            registry=on,
        )
        self.idempotency = Counter(
            "regworker_idempotency_outcomes",
            "Idempotency-table answers: claimed, duplicate, busy, completed, released.",
            ["outcome"],
            registry=on,
        )
        self.build = Info("regworker_build", "The worker's version.", registry=on)

    def names(self) -> frozenset[str]:
        """Every sample name this registry exports (``regworker_..._total``,
        ``..._bucket``, ``..._info`` ...), for checking dashboards and alerts."""
        return frozenset(sample_names(self.registry.collect()))


SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def sample_names(families: Iterable[Metric]) -> Iterable[str]:
    """Sample names by family type: a labelled family with no child yet has no samples."""
    for family in families:
        yield from (family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))

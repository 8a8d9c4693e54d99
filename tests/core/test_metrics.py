"""The metric set: names by Prometheus conventions, one registry per Metrics object."""

from __future__ import annotations

from prometheus_client import generate_latest

from worker.core.metrics import Metrics


def test_counters_end_in_total_and_durations_in_seconds() -> None:
    names = Metrics().names()
    assert "regworker_messages_received_total" in names
    assert "regworker_resolve_duration_seconds_bucket" in names
    assert "regworker_build_info" in names
    assert all(name.startswith("regworker_") for name in names)


def test_two_metrics_objects_never_share_counts() -> None:
    first, second = Metrics(), Metrics()
    first.received.inc(3)
    assert b"regworker_messages_received_total 3.0" in generate_latest(first.registry)
    assert b"regworker_messages_received_total 0.0" in generate_latest(second.registry)

"""The metric set: names by Prometheus conventions, counts read from the worker's tally
at scrape time, one registry per Metrics object."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.core.rig import watched
from worker.core.errors import ConfigurationFault
from worker.core.metrics import Metrics
from worker.core.probes import Component
from worker.core.tally import Outcome, Tally


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_end_in_total_and_durations_in_seconds() -> None:
    names = Metrics().names()
    assert "regworker_messages_received_total" in names
    assert "regworker_messages_settled_total" in names
    assert "regworker_resolve_duration_seconds_bucket" in names
    assert "regworker_build_info" in names
    assert all(name.startswith("regworker_") for name in names)


async def test_a_scrape_reads_the_tally_as_it_is_now() -> None:
    metrics = Metrics()
    tally = Tally(metrics=metrics)
    worker = watched(tally)
    metrics.watch(worker)
    tally.received += 5
    tally.count(Outcome.PUBLISHED)
    tally.count(Outcome.DEAD_LETTERED, "InvalidToken")
    tally.resolved("throttled", 0.02)
    tally.resolved("success", 0.03)
    worker.hold.report(Component.SINK, ConfigurationFault("AccessDenied: refused"))
    seen = scrape(metrics)
    assert seen[("regworker_messages_received_total", ())] == 5
    assert seen[("regworker_messages_settled_total", (("outcome", "published"),))] == 1
    assert seen[("regworker_messages_settled_total", (("outcome", "requeued"),))] == 0
    assert seen[("regworker_dead_letters_total", (("reason", "InvalidToken"),))] == 1
    assert seen[("regworker_resolve_calls_total", (("result", "throttled"),))] == 1
    assert seen[("regworker_resolve_duration_seconds_count", ())] == 2
    assert seen[("regworker_fault_hold", (("component", "sink"),))] == 1
    assert seen[("regworker_fault_hold", (("component", "source_queue"),))] == 0
    assert 10 <= seen[("regworker_resolve_rate_limit", ())] <= 20  # slow start from 10/s
    tally.received += 1
    assert scrape(metrics)[("regworker_messages_received_total", ())] == 6
    worker.hold.stop()


def test_two_metrics_objects_never_share_counts() -> None:
    first, second = Metrics(), Metrics()
    first.message_seconds.observe(0.1)
    assert scrape(first)[("regworker_message_duration_seconds_count", ())] == 1
    assert scrape(second)[("regworker_message_duration_seconds_count", ())] == 0

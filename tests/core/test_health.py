"""Liveness and readiness from the worker's marks, and the HTTP endpoint on a real socket."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from worker.core.errors import ConfigurationFault
from worker.core.fault_hold import FaultHold
from worker.core.health import LOOP_STALL_SECONDS, Health
from worker.core.http_server import HttpServer, serve
from worker.core.metrics import Metrics
from worker.core.probes import Component


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def quiet_hold() -> FaultHold:
    return FaultHold(probes={}, max_wait=30)  # no probe: these holds are only looked at


def test_a_stalled_event_loop_fails_liveness() -> None:
    clock = FakeClock()
    health = Health(liveness_seconds=120, clock=clock)
    assert health.live().ok
    clock.now += LOOP_STALL_SECONDS + 1
    verdict = health.live()
    assert not verdict.ok
    assert "event loop stalled for 11s" in verdict.reason
    health.loop_ticked()
    assert health.live().ok


def test_no_progress_fails_liveness_unless_stopping() -> None:
    clock = FakeClock()
    health = Health(liveness_seconds=120, clock=clock)
    for _ in range(13):  # the loop keeps ticking, nothing is received
        clock.now += 10
        health.loop_ticked()
    assert not health.live().ok
    assert "no receive and no settled message for 130s" in health.live().reason
    health.progressed()
    assert health.live().ok
    clock.now += 130
    health.loop_ticked()
    health.stopping()
    assert health.live().ok


def test_readiness_waits_for_the_clients_and_ends_at_shutdown() -> None:
    health = Health(liveness_seconds=120, clock=FakeClock())
    assert health.ready() == (False, "starting: clients and the start-up check")
    health.clients_built(quiet_hold())
    assert health.ready() == (True, "ready")
    health.stopping()
    assert health.ready() == (False, "shutting down")


async def test_a_fault_hold_is_not_ready_but_stays_live() -> None:
    clock = FakeClock()
    health = Health(liveness_seconds=120, clock=clock)
    hold = quiet_hold()
    health.clients_built(hold)
    hold.report(Component.SINK, ConfigurationFault("AccessDenied: publish refused"))
    verdict = health.ready()
    assert not verdict.ok
    assert verdict.reason == "fault hold: sink"
    clock.now += 500
    health.loop_ticked()
    assert health.live().ok
    hold.stop()


@pytest.fixture
def server() -> Iterator[tuple[HttpServer, Health, Metrics]]:
    health, metrics = Health(liveness_seconds=120), Metrics()
    running = serve(health, metrics.registry, "127.0.0.1", 0)
    yield running, health, metrics
    running.close()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_endpoint_serves_metrics_and_both_probes(
    server: tuple[HttpServer, Health, Metrics],
) -> None:
    running, health, metrics = server
    metrics.message_seconds.observe(0.2)
    status, body = get(running.port, "/metrics")
    assert status == 200
    assert "regworker_message_duration_seconds_count 1.0" in body
    assert get(running.port, "/healthz") == (200, "live\n")
    assert get(running.port, "/readyz") == (503, "starting: clients and the start-up check\n")
    health.clients_built(quiet_hold())
    assert get(running.port, "/readyz") == (200, "ready\n")
    assert get(running.port, "/nothing")[0] == 404

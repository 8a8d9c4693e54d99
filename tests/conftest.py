"""Shared fixtures: real local services over real sockets, never a real AWS account.

moto server (SQS, SNS, EventBridge) and the ResolveCustomer emulator run as child
processes for the whole session; each test provisions its own uniquely named queues.
Fixtures only: helpers live in tests/support.py, and test modules import them from there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
from mypy_boto3_sqs.client import SQSClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import REGION, unique_name
from worker.core import fault_hold
from worker.core.settings import Sink
from worker.local.sandbox import LocalService, emulator_server, local_env, moto_server
from worker.ops.provision import Resources, provision


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip every AWS_* and REGWORKER_* variable and point config files nowhere, so no
    test can reach a real account or pick up a developer's settings."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "REGWORKER_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(scope="session")
def moto() -> Iterator[LocalService]:
    with moto_server() as service:
        yield service


@pytest.fixture(scope="session")
def emulator() -> Iterator[LocalService]:
    with emulator_server() as service:
        yield service


@pytest.fixture
def aws_env(
    moto: LocalService, emulator: LocalService, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Point every AWS client in this process at the local services."""
    env = local_env(moto.url, emulator.url, REGION)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def session(aws_env: dict[str, str]) -> boto3.Session:
    return boto3.Session(region_name=REGION)


@pytest.fixture
def sqs(session: boto3.Session) -> SQSClient:
    return session.client("sqs")


@pytest.fixture(params=[Sink.EVENTBRIDGE, Sink.SNS], ids=["eventbridge", "sns"])
def resources(request: pytest.FixtureRequest, session: boto3.Session) -> Resources:
    """Fresh queue, DLQ and sink, with a tap queue subscribed to the sink."""
    sink = Sink(request.param)
    return provision(session, unique_name(), sink, max_receives=3, tap=True)


@pytest.fixture
def quick_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault hold probes again after 0.05 s instead of 1 s: in-process tests wait for
    the hold to clear, not for its pacing (tests/core/test_fault_hold.py checks that)."""
    monkeypatch.setattr(fault_hold, "FIRST_PROBE_WAIT", 0.05)


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """The OpenTelemetry SDK, recording every span in memory (the global provider can be
    set once per process, so once per session); tests clear it first."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter

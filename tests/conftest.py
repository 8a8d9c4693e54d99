"""Shared fixtures: real local services over real sockets, never a real AWS account.

moto server (SQS, SNS, EventBridge) and the ResolveCustomer emulator run as child
processes for the whole session; each test provisions its own uniquely named queues.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
from mypy_boto3_sqs.client import SQSClient

from worker.aws.sqs_wire import drain as drain  # the tests import it from here
from worker.core.settings import Settings, Sink
from worker.local.sandbox import LocalService, emulator_server, local_env, moto_server
from worker.ops.provision import Resources, provision

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
REGION = "us-east-1"


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


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=[Sink.EVENTBRIDGE, Sink.SNS], ids=["eventbridge", "sns"])
def resources(request: pytest.FixtureRequest, session: boto3.Session) -> Resources:
    """Fresh queue, DLQ and sink, with a tap queue subscribed to the sink."""
    sink = Sink(request.param)
    return provision(session, unique_name(), sink, max_receives=3, tap=True)


def make_settings(resources: Resources, **overrides: Any) -> Settings:
    """Settings for a fast test run: short polls, short backoffs."""
    values: dict[str, Any] = {
        "queue_url": resources.queue_url,
        "dlq_url": resources.dlq_url,
        "sink": resources.sink,
        "event_bus_name": resources.event_bus_name or "default",
        "topic_arn": resources.topic_arn,
        "event_source": resources.event_source,
        "max_receives": resources.max_receives,
        "wait_time_seconds": 1,
        "visibility_timeout_seconds": 10,
        "resolve_budget_seconds": 1.5,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.3,
        "requeue_base_seconds": 1,
        "requeue_max_seconds": 2,
        "resolve_rate_limit": 200.0,
        "publish_linger_seconds": 0.02,
        "shutdown_grace_seconds": 5,
        "fault_probe_max_seconds": 1,
        "startup_check_seconds": 3,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def event_of(tap_message: Any, sink: Sink) -> dict[str, Any]:
    """The CustomerRegistered event inside a message read from the tap queue."""
    envelope: dict[str, Any] = json.loads(tap_message["Body"])
    if sink is Sink.EVENTBRIDGE:
        assert envelope["detail-type"] == "CustomerRegistered"
        detail: dict[str, Any] = envelope["detail"]
        return detail
    return envelope


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def dead_letter_document(message: Any) -> dict[str, Any]:
    """A DLQ message as schemas/dead-letter.schema.json describes it."""
    attributes = {
        name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()
    }
    return {"body": message["Body"], "attributes": attributes}

"""The real worker against moto server and the ResolveCustomer emulator, both sinks."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from mypy_boto3_sqs.client import SQSClient
from structlog.testing import capture_logs

from tests.conftest import (
    dead_letter_document,
    drain,
    event_of,
    make_settings,
    schema_validator,
)
from tests.support import send_all, stop_after, tag
from worker.core.events import event_id_for, token_sha256
from worker.core.service import run_worker
from worker.local.sandbox import clean_environ, emulator_server, set_emulator_fault
from worker.ops.provision import Resources

EMULATOR_PRODUCT = "regworkeremulator00000001"


def dlq_by_body(sqs: SQSClient, resources: Resources) -> dict[str, dict[str, Any]]:
    documents = [dead_letter_document(m) for m in drain(sqs, resources.dlq_url)]
    validator = schema_validator("dead-letter")
    for document in documents:
        validator.validate(document)
    return {document["body"]: document["attributes"] for document in documents}


def events_by_token_hash(sqs: SQSClient, resources: Resources) -> dict[str, dict[str, Any]]:
    events = [event_of(m, resources.sink) for m in drain(sqs, resources.tap_queue_url)]
    validator = schema_validator("customer-registered")
    for event in events:
        validator.validate(event)
    return {event["token_sha256"]: event for event in events}


async def test_every_outcome(sqs: SQSClient, resources: Resources) -> None:
    t = tag()
    good = {
        f"tok-plain-{t}": f"tok-plain-{t}",
        f"tok+form/{t}=": f"x-amzn-marketplace-token=tok%2Bform%2F{t}%3D"
        "&x-amzn-marketplace-offer-type=free-trial",
        f"tok-json-{t}": json.dumps(
            {
                "registration_token": f"tok-json-{t}",
                "correlation_id": f"corr-{t}",
                "metadata": {"plan": "gold"},
            }
        ),
        f"throttle-2-{t}": f"throttle-2-{t}",  # throttled twice, then resolves in place
        f"error-2-{t}": f"error-2-{t}",  # 500 twice, then resolves in place
        f"slow-300-{t}": f"slow-300-{t}",
    }
    bad = {
        "not a token": "MalformedMessage",
        '{"offer_type": "free-trial"}': "MalformedMessage",
        f"invalid-{t}": "InvalidToken",
        f"expired-{t}": "ExpiredToken",
        f"disabled-{t}": "DisabledApi",
        f"product-othercode-{t}": "ProductNotAllowed",
        f"error-1000-{t}": "RetriesExhausted",  # fails on every delivery
    }
    send_all(sqs, resources.queue_url, [*good.values(), *bad])
    settings = make_settings(resources, allowed_product_codes=frozenset({EMULATOR_PRODUCT}))

    report = await run_worker(settings, until_empty=True)

    # At least once: a message delivered twice (moto has been seen to hand one message
    # to two concurrent receives) is settled twice; the checks by token below are exact.
    assert report.tally.outcomes["published"] >= len(good)
    assert report.tally.outcomes["dead_lettered"] >= len(bad)
    assert report.tally.outcomes["requeued"] == resources.max_receives - 1
    assert report.retries >= 4

    events = events_by_token_hash(sqs, resources)
    assert set(events) == {token_sha256(token) for token in good}
    for token in good:
        event = events[token_sha256(token)]
        assert event["event_id"] == event_id_for(token)
        assert event["product_code"] == EMULATOR_PRODUCT
        assert event["customer_aws_account_id"]
        assert event["license_arn"].startswith("arn:aws:license-manager::")
    form_event = events[token_sha256(f"tok+form/{t}=")]
    assert form_event["offer_type"] == "free-trial"
    json_event = events[token_sha256(f"tok-json-{t}")]
    assert json_event["correlation_id"] == f"corr-{t}"
    assert json_event["metadata"] == {"plan": "gold"}

    letters = dlq_by_body(sqs, resources)
    assert {body: a["dlq_reason"] for body, a in letters.items()} == bad
    exhausted = letters[f"error-1000-{t}"]
    assert exhausted["dlq_receive_count"] == str(resources.max_receives)
    assert "InternalServiceErrorException" in exhausted["dlq_error"]
    assert "dlq_token_sha256" not in letters["not a token"]
    assert letters[f"invalid-{t}"]["dlq_token_sha256"] == token_sha256(f"invalid-{t}")

    assert drain(sqs, resources.queue_url) == []


async def test_events_never_carry_the_token(sqs: SQSClient, resources: Resources) -> None:
    token = f"secret-token-{tag()}"
    send_all(sqs, resources.queue_url, [token])
    await run_worker(make_settings(resources), until_empty=True)
    raw = [m["Body"] for m in drain(sqs, resources.tap_queue_url, expected=1)]
    assert len(raw) == 1
    assert token not in raw[0]


async def test_same_token_twice_gives_the_same_event_id(
    sqs: SQSClient, resources: Resources
) -> None:
    token = f"dup-{tag()}"
    send_all(sqs, resources.queue_url, [token, f"x-amzn-marketplace-token={token}"])
    await run_worker(make_settings(resources), until_empty=True)
    events = [event_of(m, resources.sink) for m in drain(sqs, resources.tap_queue_url)]
    assert [e["event_id"] for e in events] == [event_id_for(token)] * 2


@pytest.mark.parametrize("resources", ["eventbridge"], indirect=True)
async def test_a_sink_gone_after_start_keeps_the_message(
    sqs: SQSClient, resources: Resources, session: boto3.Session
) -> None:
    """The bus is deleted after start-up: the event cannot be published, so the message
    waits in hand under the fault hold and goes back to the queue, unspent, at stop."""
    token = f"keep-{tag()}"
    bus = f"doomed-bus-{tag()}"
    events_client = session.client("events")
    events_client.create_event_bus(Name=bus)

    def delete_the_bus(_consumer: object) -> None:
        events_client.delete_event_bus(Name=bus)
        send_all(sqs, resources.queue_url, [token])

    settings = make_settings(resources, event_bus_name=bus)
    with capture_logs() as logs:
        report = await run_worker(settings, stop=stop_after(4.0), on_consumer=delete_the_bus)
    assert report.tally.outcomes == {"kept": 1}  # handed back at stop, never published
    assert ("configuration_fault", "sink") in [
        (entry["event"], entry.get("component")) for entry in logs
    ]
    assert drain(sqs, resources.dlq_url) == []
    left = drain(sqs, resources.queue_url, expected=1)
    assert [m["Body"] for m in left] == [token]
    assert left[0]["Attributes"]["ApproximateReceiveCount"] == "2"  # one delivery spent


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_rejected_credentials_never_blame_the_token(
    sqs: SQSClient, resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ResolveCustomer refuses the worker's credentials for a while after start-up, with
    one delivery allowed: the good token is held in hand, not dead-lettered nor handed
    back, and published once the credentials work again."""
    token = f"good-{tag()}"
    send_all(sqs, resources.queue_url, [token])
    with emulator_server() as emulator:
        monkeypatch.setenv("AWS_ENDPOINT_URL_MARKETPLACE_METERING", emulator.url)
        settings = make_settings(resources, max_receives=1)

        def expire_the_credentials(_consumer: object) -> None:
            set_emulator_fault(emulator.url, "UnrecognizedClientException", 2.0)

        with capture_logs() as logs:
            report = await run_worker(
                settings, until_empty=True, on_consumer=expire_the_credentials
            )
    assert report.tally.outcomes == {"published": 1}
    held = [(e["event"], e.get("component")) for e in logs if "component" in e]
    assert held == [
        ("configuration_fault", "resolve_customer"),
        ("fault_cleared", "resolve_customer"),
    ]
    faults = [entry for entry in logs if entry["event"] == "configuration_fault"]
    assert "UnrecognizedClientException" in faults[0]["error"]
    assert drain(sqs, resources.dlq_url) == []
    assert [e["event_id"] for e in events_by_token_hash(sqs, resources).values()] == [
        event_id_for(token)
    ]


@pytest.mark.parametrize("resources", ["eventbridge"], indirect=True)
def test_cli_run_until_empty(
    sqs: SQSClient, resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """`regworker run --until-empty` as a process: JSON logs, summary, exit 0, no token."""
    token = f"cli-{tag()}"
    send_all(sqs, resources.queue_url, [token, f"invalid-{tag()}"])
    env = {
        **clean_environ(),
        **aws_env,
        **resources.settings_env(),
        "REGWORKER_WAIT_TIME_SECONDS": "1",
        "REGWORKER_EVENT_BUS_NAME": resources.event_bus_name,
    }
    done = subprocess.run(
        [sys.executable, "-m", "worker", "run", "--until-empty"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("regworker: dead_lettered=1, published=1")
    records = [json.loads(line) for line in lines[:-1]]
    assert {"worker_started", "published", "dead_lettered", "worker_stopped"} <= {
        r["event"] for r in records
    }
    assert token not in done.stderr
    assert len(drain(sqs, resources.tap_queue_url, expected=1)) == 1


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_never_holds_more_than_max_in_flight(sqs: SQSClient, resources: Resources) -> None:
    tokens = [f"slow-400-{tag()}" for _ in range(15)]
    send_all(sqs, resources.queue_url, tokens)
    settings = make_settings(resources, max_in_flight=3, resolve_rate_limit=1000)
    held: list[int] = []
    watching = threading.Event()

    def watch() -> None:  # SQS's own count of received, not yet deleted messages
        while not watching.is_set():
            attributes = sqs.get_queue_attributes(
                QueueUrl=resources.queue_url,
                AttributeNames=["ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            held.append(int(attributes["ApproximateNumberOfMessagesNotVisible"]))

    watcher = asyncio.create_task(asyncio.to_thread(watch))
    report = await run_worker(settings, until_empty=True)
    watching.set()
    await watcher
    assert report.tally.outcomes["published"] == len(tokens)
    assert max(held) == 3  # busy all the way, never above the bound
    assert report.seconds >= 0.4 * len(tokens) / 3  # the bound made it take turns

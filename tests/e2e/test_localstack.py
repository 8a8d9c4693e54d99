"""The worker's integration tests again, on LocalStack instead of moto, plus the native
DLQ move task (StartMessageMoveTask) that moto lacks.

The module overrides the conftest ``moto`` fixture with LocalStack, so ``aws_env``,
``session``, ``sqs`` and ``resources`` (and the worker's own clients, through
AWS_ENDPOINT_URL) all talk to LocalStack; the ResolveCustomer emulator stays. The
scenarios tests/e2e/test_worker.py runs on moto run here too, shared through
tests/support.py (``every_outcome``, ``cli_run_until_empty``): the run of every outcome
per sink (which also checks that no published body carries its token) and the command
line. The outcome matrix case by case (duplicates, credentials refused) runs in-process,
the same whatever serves AWS (tests/core/test_handler.py). LocalStack's PutEvents
accepts events for a bus that does not exist (AWS refuses them), so the SNS test below
takes the place of the in-process "sink gone" case on the wire.

`make localstack` installs LocalStack. Without it these tests are skipped, except in CI
(``CI`` set), where they fail: CI must never skip them silently.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from tests.support import (
    cli_run_until_empty,
    drain,
    every_outcome,
    make_settings,
    one_line,
    run_until_empty,
    send_all,
    stop_after,
    tag,
)
from worker.aws.sqs_wire import queue_arn
from worker.core.dead_letter import REASON
from worker.core.service import run_worker
from worker.local.sandbox import LOCALSTACK_VENV, LocalService, localstack_server
from worker.ops.dlq.redrive import start_redrive, wait_for_redrive
from worker.ops.provision import REDRIVE_MARGIN, Resources

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import ListMessageMoveTasksResultEntryTypeDef

IN_CI = os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}
INSTALLED = (LOCALSTACK_VENV / "bin" / "python").exists()
MISSING = f"LocalStack is not installed ({LOCALSTACK_VENV}): `make localstack` installs it"
MOVE_TASK_TIMEOUT = 30.0

pytestmark = [
    pytest.mark.skipif(not INSTALLED and not IN_CI, reason=MISSING),
    pytest.mark.xdist_group("localstack"),  # one LocalStack at a time on the machine
]


@pytest.fixture(scope="module")
def moto() -> Iterator[LocalService]:
    """LocalStack in the place of moto server for every fixture of this module."""
    if not INSTALLED:
        pytest.fail(f"{MISSING} (CI is set: these tests must run, not skip)")
    with localstack_server() as service:
        yield service


async def test_every_outcome(sqs: SQSClient, resources: Resources) -> None:
    await every_outcome(sqs, resources)


@pytest.mark.parametrize("resources", ["eventbridge"], indirect=True)
def test_cli_run_until_empty(
    sqs: SQSClient, resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    cli_run_until_empty(sqs, resources, aws_env, tmp_path)


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_a_topic_gone_after_start_keeps_the_message(
    sqs: SQSClient, resources: Resources, session: boto3.Session
) -> None:
    """The topic is deleted after start-up: the message waits in hand under the fault
    hold and goes back to the queue at stop; nothing reaches the DLQ."""
    token = f"keep-{tag()}"

    def delete_the_topic(_consumer: object) -> None:
        session.client("sns").delete_topic(TopicArn=resources.topic_arn)
        send_all(sqs, resources.queue_url, [token])

    report = await run_worker(
        make_settings(resources), stop=stop_after(4.0), on_consumer=delete_the_topic
    )
    assert report.tally.outcomes == {"kept": 1}
    assert drain(sqs, resources.dlq_url) == []
    assert [m["Body"] for m in drain(sqs, resources.queue_url, expected=1)] == [token]


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
def test_forgotten_metering_endpoint_stops_at_start(
    resources: Resources, aws_env: dict[str, str], moto: LocalService, tmp_path: Path
) -> None:
    """Everything pointed at LocalStack, AWS_ENDPOINT_URL_MARKETPLACE_METERING forgotten:
    LocalStack answers ResolveCustomer with 501 "not yet emulated", which is no fault
    that passes: one line, exit 2, at once (not after the retry time)."""
    env = {k: v for k, v in aws_env.items() if k != "AWS_ENDPOINT_URL_MARKETPLACE_METERING"}
    started = time.monotonic()
    result = run_until_empty(resources, env, tmp_path, REGWORKER_STARTUP_CHECK_SECONDS="30")
    line = one_line(result)
    assert time.monotonic() - started < 25
    assert line.startswith("regworker run: AWS_ENDPOINT_URL_MARKETPLACE_METERING: ")
    assert "does not answer as ResolveCustomer" in line


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_stopped_worker_leaves_no_long_poll_behind(
    sqs: SQSClient, resources: Resources
) -> None:
    """A message sent right after the worker stopped must be receivable at once, not held
    invisible for the visibility timeout by a long poll the worker abandoned."""
    settings = make_settings(resources, wait_time_seconds=5)
    await run_worker(settings, stop=stop_after(1.0))  # stops while its polls wait
    send_all(sqs, resources.queue_url, [f"after-stop-{tag()}"])
    answer = sqs.receive_message(QueueUrl=resources.queue_url, WaitTimeSeconds=2)
    assert len(answer.get("Messages", [])) == 1


def wait_for_move_task(sqs: SQSClient, source_arn: str) -> ListMessageMoveTasksResultEntryTypeDef:
    deadline = time.monotonic() + MOVE_TASK_TIMEOUT
    while time.monotonic() < deadline:
        task = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=1)["Results"][0]
        if task["Status"] not in {"RUNNING", "CANCELLING"}:
            return task
        time.sleep(0.2)
    raise AssertionError(f"move task from {source_arn} still running after {MOVE_TASK_TIMEOUT}s")


def count_messages(sqs: SQSClient, queue_url: str, *, in_flight: bool = False) -> int:
    names: list[QueueAttributeNameType] = ["ApproximateNumberOfMessages"]
    if in_flight:
        names.append("ApproximateNumberOfMessagesNotVisible")
    answer = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
    return sum(int(answer["Attributes"][name]) for name in names)


def wait_until_visible(sqs: SQSClient, queue_url: str, expected: int) -> None:
    deadline = time.monotonic() + MOVE_TASK_TIMEOUT
    while count_messages(sqs, queue_url) != expected:
        assert time.monotonic() < deadline, f"{queue_url}: not {expected} visible messages"
        time.sleep(0.2)


def redrive_by_policy(sqs: SQSClient, resources: Resources, bodies: list[str]) -> None:
    """Receive every message until the queue's redrive policy moves it to the DLQ,
    as after repeated crashes."""
    for body in bodies:
        sqs.send_message(QueueUrl=resources.queue_url, MessageBody=body)
    for _ in range(resources.max_receives + REDRIVE_MARGIN + 2):
        sqs.receive_message(
            QueueUrl=resources.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        if count_messages(sqs, resources.dlq_url) == len(bodies):
            return
    raise AssertionError("the redrive policy did not move the messages to the DLQ")


async def dead_letter_invalid_tokens(sqs: SQSClient, resources: Resources, count: int) -> set[str]:
    bodies = {f"invalid-{tag()}" for _ in range(count)}
    for body in bodies:
        sqs.send_message(QueueUrl=resources.queue_url, MessageBody=body)
    settings = make_settings(resources)
    report = await run_worker(settings, until_empty=True)
    assert report.tally.outcomes["dead_lettered"] == count
    # The worker cancels its last long polls when it stops, but LocalStack finishes them
    # server-side: a message moved back within that window would be received by a poll
    # nobody reads and stay invisible for the visibility timeout. Let them run out.
    await asyncio.sleep(settings.wait_time_seconds + 0.5)
    return bodies


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
def test_move_task_returns_redriven_messages_to_their_source(
    sqs: SQSClient, resources: Resources
) -> None:
    bodies = [f"crashed-{tag()}" for _ in range(3)]
    redrive_by_policy(sqs, resources, bodies)
    dlq_arn = queue_arn(sqs, resources.dlq_url)

    sqs.start_message_move_task(SourceArn=dlq_arn)
    task = wait_for_move_task(sqs, dlq_arn)

    assert task["Status"] == "COMPLETED"
    assert task["ApproximateNumberOfMessagesMoved"] == len(bodies)
    assert sorted(m["Body"] for m in drain(sqs, resources.queue_url)) == sorted(bodies)
    assert count_messages(sqs, resources.dlq_url) == 0


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_move_task_needs_a_destination_for_the_workers_dead_letters(
    sqs: SQSClient, resources: Resources
) -> None:
    """The worker sends its dead letters itself, so SQS does not know their source
    queue: a move task without DestinationArn fails and leaves them in the DLQ."""
    bodies = await dead_letter_invalid_tokens(sqs, resources, 3)
    dlq_arn = queue_arn(sqs, resources.dlq_url)

    sqs.start_message_move_task(SourceArn=dlq_arn)
    assert wait_for_move_task(sqs, dlq_arn)["Status"] == "FAILED"
    assert count_messages(sqs, resources.dlq_url, in_flight=True) == len(bodies)
    # The failed task held the message it could not place for a moment; a task only
    # moves what is visible.
    wait_until_visible(sqs, resources.dlq_url, len(bodies))

    sqs.start_message_move_task(
        SourceArn=dlq_arn, DestinationArn=queue_arn(sqs, resources.queue_url)
    )
    task = wait_for_move_task(sqs, dlq_arn)

    assert task["Status"] == "COMPLETED"
    assert task["ApproximateNumberOfMessagesMoved"] == len(bodies)
    moved = drain(sqs, resources.queue_url)
    assert {m["Body"] for m in moved} == bodies
    assert {m["MessageAttributes"][REASON]["StringValue"] for m in moved} == {"InvalidToken"}


@pytest.mark.parametrize("resources", ["eventbridge"], indirect=True)
async def test_dlq_redrive_tool_moves_dead_letters_back(
    sqs: SQSClient, resources: Resources
) -> None:
    bodies = await dead_letter_invalid_tokens(sqs, resources, 4)

    task = start_redrive(sqs, resources.dlq_url, destination=resources.queue_url)
    final = wait_for_redrive(sqs, task, poll_seconds=0.2)

    assert final["Status"] == "COMPLETED"
    assert final["ApproximateNumberOfMessagesMoved"] == len(bodies)
    assert {m["Body"] for m in drain(sqs, resources.queue_url)} == bodies
    assert count_messages(sqs, resources.dlq_url) == 0

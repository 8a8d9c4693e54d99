"""``redrive``: SQS's native move task (StartMessageMoveTask) from the DLQ.

Faster than a replay, but no filtering, no dry run and no replay count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from worker.aws.sqs_wire import queue_arn
from worker.core.faults import error_code
from worker.ops.dlq.target import DlqError

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import (
        ListMessageMoveTasksResultEntryTypeDef,
        StartMessageMoveTaskRequestTypeDef,
    )

MOVE_TASK_ACTIVE: Final = frozenset({"RUNNING", "CANCELLING"})
MOVE_TASK_UNLISTED_POLLS: Final = 5
UNSUPPORTED_CODES: Final = frozenset(
    {
        "InvalidAction",
        "UnknownOperationException",
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        "NotImplemented",
    }
)
UNSUPPORTED_MESSAGE: Final = (
    "this endpoint does not support StartMessageMoveTask (moto); use `regworker dlq replay`"
)


class MoveTaskUnsupported(DlqError):
    """The endpoint has no StartMessageMoveTask (moto)."""


@dataclass(frozen=True)
class MoveTask:
    handle: str
    source_arn: str


def start_redrive(
    client: SQSClient, dlq_url: str, *, destination: str | None = None, rate: int | None = None
) -> MoveTask:
    """Start a native move task from the DLQ. ``destination`` is a queue ARN or URL;
    without one, messages go back to the queues they came from."""
    source_arn = queue_arn(client, dlq_url)
    request: StartMessageMoveTaskRequestTypeDef = {"SourceArn": source_arn}
    if destination:
        request["DestinationArn"] = _as_arn(client, destination)
    if rate is not None:
        request["MaxNumberOfMessagesPerSecond"] = rate
    try:
        answer = client.start_message_move_task(**request)
    except ClientError as error:
        if _unsupported(error):
            raise MoveTaskUnsupported(UNSUPPORTED_MESSAGE) from None
        raise
    return MoveTask(answer["TaskHandle"], source_arn)


def move_task_status(
    client: SQSClient, task: MoveTask
) -> ListMessageMoveTasksResultEntryTypeDef | None:
    """This task's entry, or None while it is not listed yet. Only running tasks carry
    their handle; once finished, the newest entry is ours (one task per queue at a time)."""
    results = client.list_message_move_tasks(SourceArn=task.source_arn, MaxResults=10).get(
        "Results", []
    )
    for entry in results:
        if entry.get("TaskHandle") == task.handle:
            return entry
    return results[0] if results else None


def wait_for_redrive(
    client: SQSClient,
    task: MoveTask,
    *,
    poll_seconds: float = 2.0,
    on_status: Callable[[ListMessageMoveTasksResultEntryTypeDef], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ListMessageMoveTasksResultEntryTypeDef:
    """Poll ListMessageMoveTasks until the task is no longer running."""
    unlisted = 0
    while True:
        status = move_task_status(client, task)
        if status is None:
            unlisted += 1
            if unlisted > MOVE_TASK_UNLISTED_POLLS:
                raise DlqError(f"the move task does not show up for {task.source_arn}")
        else:
            if on_status is not None:
                on_status(status)
            if status.get("Status") not in MOVE_TASK_ACTIVE:
                return status
        sleep(poll_seconds)


def redrive(
    client: SQSClient,
    dlq_url: str,
    *,
    destination: str | None = None,
    rate: int | None = None,
    poll_seconds: float = 2.0,
) -> ListMessageMoveTasksResultEntryTypeDef:
    """Start a native move task and wait for it: its final ListMessageMoveTasks entry."""
    task = start_redrive(client, dlq_url, destination=destination, rate=rate)
    return wait_for_redrive(client, task, poll_seconds=poll_seconds)


def _as_arn(client: SQSClient, queue: str) -> str:
    return queue if queue.startswith("arn:") else queue_arn(client, queue)


def _unsupported(error: ClientError) -> bool:
    code = error_code(error)
    # A bare HTTP status as the code means the server answered no AWS error at all
    # (moto's HTML "500 Internal Server Error" for operations it does not implement).
    return code in UNSUPPORTED_CODES or code.isdigit()


def describe_move_task(task: ListMessageMoveTasksResultEntryTypeDef) -> str:
    moved = task.get("ApproximateNumberOfMessagesMoved", 0)
    to_move = task.get("ApproximateNumberOfMessagesToMove")
    progress = f"{moved} moved" if to_move is None else f"{moved} of {to_move} moved"
    failure = task.get("FailureReason")
    return f"{task.get('Status', 'UNKNOWN')}: {progress}" + (f" ({failure})" if failure else "")

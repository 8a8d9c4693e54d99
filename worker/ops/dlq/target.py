"""Which DLQ a command works on, how to reach it, and the errors it ends with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from worker.aws.localstack import localstack_session
from worker.core.faults import describe, error_code

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

CLIENT_CONFIG: Final = Config(retries={"mode": "standard", "max_attempts": 3})

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class DlqError(Exception):
    """The tool could not finish its job: exit 1."""


@dataclass(frozen=True)
class Target:
    dlq_url: str
    region: str
    localstack: bool = False
    destination_url: str = ""


def sqs_client(target: Target) -> SQSClient:
    """The tool's SQS client; raises ``LocalStackClientMissing`` for ``--localstack``
    without the ``local`` extra."""
    session = (
        localstack_session(target.region)
        if target.localstack
        else boto3.Session(region_name=target.region)
    )
    client: SQSClient = session.client("sqs", config=CLIENT_CONFIG)
    return client


def describe_error(error: BaseException) -> str:
    """One line about a failed call, naming the operation and the error code."""
    if isinstance(error, ClientError):
        operation = error.operation_name
        return f"{operation}: {error_code(error)}: {describe(error)}"
    return describe(error)

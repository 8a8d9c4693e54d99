"""The start-up check: before the first receive, every dependency the settings name
must exist and answer, or the worker stops with one line that names what to fix.

Each dependency's probe (``worker.core.probes``) runs once. A configuration answer (no
credentials, credentials refused, access denied, no such queue, topic, bus or table,
an endpoint that is not the service) fails at once. An answer that may pass
(throttling, 5xx, no connection, a slow endpoint) is tried again until
``REGWORKER_STARTUP_CHECK_SECONDS``; only then is it reported, as an endpoint to check.
After start-up the same faults go to the fault hold instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

from worker.core.errors import ConfigurationFault, RegworkerError
from worker.core.faults import (
    CREDENTIAL_CODES,
    THROTTLING_CODES,
    classify_aws_error,
    describe,
    error_code,
    http_status,
)
from worker.core.probes import Component, Probe
from worker.core.settings import Settings, Sink

FIRST_RETRY_WAIT: Final = 0.5
MAX_RETRY_WAIT: Final = 5.0
ACCESS_CODES: Final = frozenset(
    {"AccessDenied", "AccessDeniedException", "AuthorizationError", "KMSAccessDeniedException"}
)
MISSING_CODES: Final = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NotFound",
        "NotFoundException",
        "ResourceNotFoundException",
    }
)
CREDENTIALS_HINT: Final = (
    "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for LocalStack or"
    " moto any value, e.g. test, with AWS_ENDPOINT_URL pointing at it)"
)


class StartupCheckFailed(RegworkerError):
    """A dependency is misconfigured or unreachable; the message is the one line to print."""


@dataclass(frozen=True)
class Target:
    """A dependency as the user configured it: the setting that names it and the
    variable that points its client somewhere."""

    what: str
    setting: str
    endpoint_variable: str


def targets(settings: Settings) -> Mapping[Component, Target]:
    sink = (
        Target(f"SNS topic {settings.topic_arn}", "REGWORKER_TOPIC_ARN", "AWS_ENDPOINT_URL_SNS")
        if settings.sink is Sink.SNS
        else Target(
            f"EventBridge bus {settings.event_bus_name}",
            "REGWORKER_EVENT_BUS_NAME",
            "AWS_ENDPOINT_URL_EVENTBRIDGE",
        )
    )
    return {
        Component.SOURCE_QUEUE: Target(
            f"queue {settings.queue_url}", "REGWORKER_QUEUE_URL", "AWS_ENDPOINT_URL_SQS"
        ),
        Component.DEAD_LETTER_QUEUE: Target(
            f"dead-letter queue {settings.dlq_url}", "REGWORKER_DLQ_URL", "AWS_ENDPOINT_URL_SQS"
        ),
        Component.SINK: sink,
        Component.IDEMPOTENCY_TABLE: Target(
            f"DynamoDB table {settings.idempotency_table}",
            "REGWORKER_IDEMPOTENCY_TABLE",
            "AWS_ENDPOINT_URL_DYNAMODB",
        ),
        Component.RESOLVE_CUSTOMER: Target(
            "ResolveCustomer", "", "AWS_ENDPOINT_URL_MARKETPLACE_METERING"
        ),
    }


async def check_startup(
    settings: Settings, probes: Mapping[Component, Probe], endpoints: Mapping[Component, str]
) -> None:
    """Raise ``StartupCheckFailed`` with one line when a dependency does not work.
    ``endpoints``: each client's endpoint URL, for the message."""
    deadline = time.monotonic() + settings.startup_check_seconds
    named = targets(settings)
    results = await asyncio.gather(
        *(
            _check(named[component], endpoints.get(component, ""), probe, deadline)
            for component, probe in probes.items()
        )
    )
    problems = [problem for problem in results if problem]
    if problems:
        raise StartupCheckFailed(problems[0])


async def _check(target: Target, endpoint: str, probe: Probe, deadline: float) -> str:
    """The problem in one line, or "" when the dependency answers."""
    wait = FIRST_RETRY_WAIT
    while True:
        try:
            # An endpoint that takes the connection and never answers must not outlast
            # the check: each try gets what is left of its time.
            await asyncio.wait_for(probe(), timeout=max(0.5, deadline - time.monotonic()))
        except Exception as error:
            classified = classify_aws_error(error)
            if classified is None:
                raise
            if isinstance(classified, ConfigurationFault) or refused_for_good(error):
                return misconfigured(target, endpoint, error)
            if time.monotonic() + wait > deadline:
                return unreachable(target, endpoint, error)
            await asyncio.sleep(wait)
            wait = min(MAX_RETRY_WAIT, wait * 2)
            continue
        return ""


def refused_for_good(error: BaseException) -> bool:
    """A 4xx answer other than throttling: at start-up, before any message, a request
    the service refuses (a topic ARN of another region, a table with another key) is
    the settings' fault and will not pass by itself."""
    if not isinstance(error, ClientError):
        return False
    status = http_status(error)
    return 400 <= status < 500 and error_code(error) not in THROTTLING_CODES


def misconfigured(target: Target, endpoint: str, error: BaseException) -> str:
    code = error_code(error)
    text = describe(error, limit=200)
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return f"no AWS credentials found: {CREDENTIALS_HINT}"
    if code == "DisabledApiException":
        return (
            "ResolveCustomer answers DisabledApiException: the Marketplace Metering API is"
            " disabled for this seller account in this region (REGWORKER_AWS_REGION); ask"
            " AWS Marketplace seller support"
        )
    if code in CREDENTIAL_CODES:
        return (
            f"AWS credentials refused by {target.what} ({code}): check AWS_PROFILE or"
            f" AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and {target.endpoint_variable}"
            f" ({endpoint})"
        )
    if code in ACCESS_CODES:
        subject = f"{target.setting}: " if target.setting else ""
        return (
            f"{subject}access denied to {target.what} ({code}: {text}): the worker's IAM role"
            " needs the WorkerPolicy of deploy/cloudformation.yaml"
        )
    if code in MISSING_CODES and target.setting:
        return f"{target.setting}: no such {target.what} ({code}) at {endpoint}"
    return (
        f"{target.endpoint_variable}: {endpoint} does not answer as {target.what} ({code}: {text})"
    )


def unreachable(target: Target, endpoint: str, error: BaseException) -> str:
    return (
        f"{target.endpoint_variable}: {target.what} did not answer at {endpoint}"
        f" ({error_code(error)}: {describe(error, limit=200)}); tried until"
        " REGWORKER_STARTUP_CHECK_SECONDS ran out"
    )

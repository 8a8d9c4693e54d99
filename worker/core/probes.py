"""Cheap calls that tell whether a dependency works, one per dependency.

The start-up check runs them all before the first receive; the fault hold runs the one
that failed until it answers again. Each probe returns when the dependency answers as
it should and raises the call's own error otherwise. None of them changes anything.

- ResolveCustomer: a token that cannot be valid. ``InvalidTokenException`` means the
  credentials, the region and the endpoint all work (an answer for the token would say
  the same); anything else (a credentials error, an endpoint that is not
  ResolveCustomer) does not.
- The queues: ``GetQueueAttributes`` (the worker reads the depth with it anyway).
- SNS: ``GetTopicAttributes``; EventBridge: ``DescribeEventBus``.
- The idempotency table: ``GetItem`` of a key no token can have, with the rights
  the worker already holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from worker.core.faults import error_code

if TYPE_CHECKING:
    from worker.aws.clients import AwsClients
    from worker.core.settings import Settings

# "invalid-" also makes the project's emulator answer InvalidTokenException.
PROBE_TOKEN: Final = "invalid-regworker-probe"
PROBE_EVENT_ID: Final = "regworker-probe"
WORKING_ANSWERS: Final = frozenset({"InvalidTokenException", "ExpiredTokenException"})

Probe = Callable[[], Awaitable[None]]


class Component(StrEnum):
    """The dependencies a fault can be held for, named as operators see them."""

    RESOLVE_CUSTOMER = "resolve_customer"
    SOURCE_QUEUE = "source_queue"
    DEAD_LETTER_QUEUE = "dead_letter_queue"
    SINK = "sink"
    IDEMPOTENCY_TABLE = "idempotency_table"


def probes_for(settings: Settings, clients: AwsClients) -> Mapping[Component, Probe]:
    probes: dict[Component, Probe] = {
        Component.SOURCE_QUEUE: lambda: _queue(clients, settings.queue_url),
        Component.DEAD_LETTER_QUEUE: lambda: _queue(clients, settings.dlq_url),
        Component.SINK: lambda: _sink(settings, clients),
        Component.RESOLVE_CUSTOMER: lambda: _resolve_customer(clients),
    }
    if clients.dynamodb is not None:
        probes[Component.IDEMPOTENCY_TABLE] = lambda: _table(settings, clients)
    return probes


async def _queue(clients: AwsClients, url: str) -> None:
    await clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])


async def _sink(settings: Settings, clients: AwsClients) -> None:
    if clients.sns is not None:
        await clients.sns.get_topic_attributes(TopicArn=settings.topic_arn)
    elif clients.events is not None:
        await clients.events.describe_event_bus(Name=settings.event_bus_name)


async def _resolve_customer(clients: AwsClients) -> None:
    try:
        await clients.metering.resolve_customer(RegistrationToken=PROBE_TOKEN)
    except ClientError as error:
        if error_code(error) not in WORKING_ANSWERS:
            raise


async def _table(settings: Settings, clients: AwsClients) -> None:
    if clients.dynamodb is not None:
        await clients.dynamodb.get_item(
            TableName=settings.idempotency_table, Key={"event_id": {"S": PROBE_EVENT_ID}}
        )

"""AWS clients, opened once and kept for the worker's life.

Endpoints, credentials and profiles come from the standard AWS variables
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL_MARKETPLACE_METERING``,
``AWS_PROFILE``, ...), so one binary runs against AWS, LocalStack or moto.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from worker.core.settings import (
    CALL_CONNECT_TIMEOUT_SECONDS,
    CALL_READ_TIMEOUT_SECONDS,
    Settings,
    Sink,
)

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_events.client import EventBridgeClient
    from types_aiobotocore_meteringmarketplace.client import MarketplaceMeteringClient
    from types_aiobotocore_sns.client import SNSClient
    from types_aiobotocore_sqs.client import SQSClient


@dataclass(frozen=True)
class AwsClients:
    sqs: SQSClient
    metering: MarketplaceMeteringClient
    sns: SNSClient | None
    events: EventBridgeClient | None
    dynamodb: DynamoDBClient | None


def pool_size(settings: Settings) -> int:
    """Parallel long polls, one resolve per in-flight message and the batch senders:
    botocore's default pool of 10 would queue them behind each other."""
    return settings.receive_concurrency + settings.max_in_flight + 16


@asynccontextmanager
async def open_clients(settings: Settings) -> AsyncIterator[AwsClients]:
    session = get_session()
    region = settings.aws_region
    pool = pool_size(settings)
    # The long poll holds a read open for wait_time_seconds: the read timeout must outlast it.
    sqs_config = AioConfig(
        max_pool_connections=pool,
        read_timeout=settings.wait_time_seconds + 15,
        connect_timeout=CALL_CONNECT_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": 3},
    )
    # Retries of ResolveCustomer are the worker's own (tenacity), so botocore makes one try.
    metering_config = AioConfig(
        max_pool_connections=pool,
        read_timeout=settings.resolve_timeout_seconds,
        connect_timeout=min(5.0, settings.resolve_timeout_seconds),
        retries={"mode": "standard", "total_max_attempts": 1},
    )
    publish_config = AioConfig(
        max_pool_connections=pool,
        read_timeout=CALL_READ_TIMEOUT_SECONDS,
        connect_timeout=CALL_CONNECT_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": 3},
    )
    async with AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(
            session.create_client("sqs", region_name=region, config=sqs_config)
        )
        metering = await stack.enter_async_context(
            session.create_client("meteringmarketplace", region_name=region, config=metering_config)
        )
        sns = events = None
        if settings.sink is Sink.SNS:
            sns = await stack.enter_async_context(
                session.create_client("sns", region_name=region, config=publish_config)
            )
        else:
            events = await stack.enter_async_context(
                session.create_client("events", region_name=region, config=publish_config)
            )
        dynamodb = None
        if settings.idempotency_table:
            dynamodb = await stack.enter_async_context(
                session.create_client("dynamodb", region_name=region, config=publish_config)
            )
        yield AwsClients(sqs=sqs, metering=metering, sns=sns, events=events, dynamodb=dynamodb)

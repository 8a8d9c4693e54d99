"""Reference pipeline for bench/compare.py: the best simple thing, no reliability features.

16 asyncio lanes share one set of aiobotocore clients (opened once, a pool of 64
connections). Each lane loops: receive up to 10 messages (1 s long poll), resolve them
all at once with ResolveCustomer, publish the events with one SNS PublishBatch, delete
the messages with one DeleteMessageBatch. No parsing, no rate limit, no retries, no
DLQ: an error ends the run with a traceback. With ``--worker-wire`` it makes the worker's
requests (receives ask for the message attributes the worker reads, each event carries
the worker's SNS message attributes), so that what separates the two is the worker's own
work.

It stops once it has processed ``--count`` messages, or when receives come back empty
``--idle-receives`` times in a row (across lanes) after at least one message. Endpoints
and credentials come from the standard AWS_* variables (the worker's environment works).
Pickup-to-publish per message (receive answer to publish answer, in ms) goes to
``--latency-out``, one integer a line; one JSON summary line goes to stdout.

    .venv/bin/python bench/reference.py --queue-url URL --topic-arn ARN --count 3000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypedDict

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from worker.aws.sqs_wire import MAX_BATCH, RECEIVE_MESSAGE_ATTRIBUTES, RECEIVE_SYSTEM_ATTRIBUTES
from worker.core.events import (
    ResolvedCustomer,
    customer_registered,
    encode,
    sns_message_attributes,
)
from worker.core.request import RegistrationRequest

if TYPE_CHECKING:
    from types_aiobotocore_meteringmarketplace.client import MarketplaceMeteringClient
    from types_aiobotocore_sns.client import SNSClient
    from types_aiobotocore_sns.type_defs import PublishBatchRequestEntryTypeDef
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.literals import MessageSystemAttributeNameType
    from types_aiobotocore_sqs.type_defs import MessageTypeDef


class ReceiveAttributes(TypedDict, total=False):
    MessageSystemAttributeNames: Sequence[MessageSystemAttributeNameType]
    MessageAttributeNames: Sequence[str]


LANES: Final = 16
POOL: Final = 64
WAIT_SECONDS: Final = 1


@dataclass(frozen=True)
class Clients:
    sqs: SQSClient
    metering: MarketplaceMeteringClient
    sns: SNSClient


@dataclass
class Progress:
    """Shared by the lanes: what is done, and whether to stop."""

    count: int
    idle_limit: int
    processed: int = 0
    empty_in_a_row: int = 0
    latencies_ms: list[int] = field(default_factory=list)
    # Wall-clock times of the first message picked up and the last publish answered.
    flow: list[float] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        if self.processed >= self.count:
            return True
        idle = self.idle_limit > 0 and self.empty_in_a_row >= self.idle_limit
        return idle and self.processed > 0

    def record_receive(self, received: int) -> None:
        self.empty_in_a_row = 0 if received else self.empty_in_a_row + 1


def event_body(token: str, answer: Mapping[str, object]) -> str:
    """The same CustomerRegistered payload the worker publishes, from the
    ResolveCustomer answer (aiobotocore's or boto3's)."""
    return encode(event_of(token, answer))


def event_of(token: str, answer: Mapping[str, object]) -> dict[str, Any]:

    def field(name: str) -> str | None:
        value = answer.get(name)
        return str(value) if value else None

    customer = ResolvedCustomer(
        product_code=str(answer["ProductCode"]),
        customer_identifier=field("CustomerIdentifier"),
        customer_aws_account_id=field("CustomerAWSAccountId"),
        license_arn=field("LicenseArn"),
    )
    return customer_registered(RegistrationRequest(token, "token"), customer)


async def handle_batch(
    clients: Clients, args: argparse.Namespace, messages: list[MessageTypeDef]
) -> float:
    """Resolve, publish, delete one received batch; answers when the publish returned."""
    answers = await asyncio.gather(
        *(clients.metering.resolve_customer(RegistrationToken=m.get("Body", "")) for m in messages)
    )
    entries: list[PublishBatchRequestEntryTypeDef] = []
    for n, (message, answer) in enumerate(zip(messages, answers, strict=True)):
        event = event_of(message.get("Body", ""), answer)
        entries.append({"Id": str(n), "Message": encode(event)})
        if args.worker_wire:
            entries[-1]["MessageAttributes"] = sns_message_attributes(event)
    await clients.sns.publish_batch(TopicArn=args.topic_arn, PublishBatchRequestEntries=entries)
    published = time.monotonic()
    await clients.sqs.delete_message_batch(
        QueueUrl=args.queue_url,
        Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
        ],
    )
    return published


async def lane(clients: Clients, args: argparse.Namespace, progress: Progress) -> None:
    while not progress.finished:
        answer = await clients.sqs.receive_message(
            QueueUrl=args.queue_url,
            MaxNumberOfMessages=MAX_BATCH,
            WaitTimeSeconds=WAIT_SECONDS,
            **worker_receive(args),
        )
        received = time.monotonic()
        messages = answer.get("Messages", [])
        progress.record_receive(len(messages))
        if not messages:
            continue
        if not progress.flow:
            progress.flow.append(time.time() - (time.monotonic() - received))
        published = await handle_batch(clients, args, messages)
        progress.latencies_ms.extend([int((published - received) * 1000)] * len(messages))
        progress.flow[1:] = [time.time() - (time.monotonic() - published)]
        progress.processed += len(messages)


def worker_receive(args: argparse.Namespace) -> ReceiveAttributes:
    """With ``--worker-wire``, the attributes the worker asks of each message."""
    if not args.worker_wire:
        return {}
    return {
        "MessageSystemAttributeNames": RECEIVE_SYSTEM_ATTRIBUTES,
        "MessageAttributeNames": RECEIVE_MESSAGE_ATTRIBUTES,
    }


async def run(args: argparse.Namespace) -> Progress:
    config = AioConfig(max_pool_connections=POOL)
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    session = get_session()
    async with AsyncExitStack() as stack:
        clients = Clients(
            sqs=await stack.enter_async_context(
                session.create_client("sqs", region_name=region, config=config)
            ),
            metering=await stack.enter_async_context(
                session.create_client("meteringmarketplace", region_name=region, config=config)
            ),
            sns=await stack.enter_async_context(
                session.create_client("sns", region_name=region, config=config)
            ),
        )
        progress = Progress(args.count, args.idle_receives)
        async with asyncio.TaskGroup() as group:
            for _ in range(args.lanes):
                group.create_task(lane(clients, args, progress))
    return progress


def pipeline_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options reference.py and naive.py share."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--topic-arn", required=True)
    parser.add_argument("--count", type=int, required=True, help="stop after this many")
    parser.add_argument(
        "--idle-receives",
        type=int,
        default=3,
        help="stop after this many empty receives in a row, 0 never (%(default)s)",
    )
    parser.add_argument("--latency-out", type=Path, help="pickup-to-publish ms, one a line")
    return parser


def report(
    args: argparse.Namespace,
    started: float,
    latencies_ms: Sequence[int],
    flow: Sequence[float] = (),
) -> None:
    """Latencies to ``--latency-out``; one JSON summary line on stdout (with ``flow``:
    the wall-clock first pickup and last publish, for the msg/s in flow)."""
    if args.latency_out is not None:
        args.latency_out.write_text("".join(f"{ms}\n" for ms in latencies_ms))
    summary: dict[str, object] = {
        "processed": len(latencies_ms),
        "seconds": round(time.monotonic() - started, 3),
    }
    if len(flow) == 2:
        summary["flow"] = [round(moment, 3) for moment in flow]
    print(json.dumps(summary))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = pipeline_parser(__doc__)
    parser.add_argument("--lanes", type=int, default=LANES, help="(%(default)s)")
    parser.add_argument(
        "--young-gc-threshold",
        type=int,
        help="the garbage collector's first threshold (default CPython's); the worker"
        " runs at GC_YOUNG_THRESHOLD (worker/cli/run.py)",
    )
    parser.add_argument(
        "--worker-wire",
        action="store_true",
        help="make the worker's requests: receives ask for its message attributes,"
        " each event carries its SNS message attributes (still no parsing, retries, DLQ"
        " or logs)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    if args.young_gc_threshold:
        gc.set_threshold(args.young_gc_threshold, *gc.get_threshold()[1:])
    progress = asyncio.run(run(args))
    report(args, started, progress.latencies_ms, progress.flow)
    return 0


if __name__ == "__main__":
    sys.exit(main())

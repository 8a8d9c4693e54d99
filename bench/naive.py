"""Naive baseline for bench/compare.py: the textbook boto3 loop, one call at a time.

Receive up to 10 messages (1 s long poll), then for each message in turn: resolve it
with ResolveCustomer, publish its event with SNS Publish, delete it. No concurrency, no
batching, no error handling.

It stops once it has processed ``--count`` messages, or after ``--idle-receives`` empty
receives in a row once at least one message was processed. Endpoints and credentials
come from the standard AWS_* variables. Pickup-to-publish per message (receive answer
to that message's publish answer, in ms) goes to ``--latency-out``, one integer a line;
one JSON summary line goes to stdout.

    .venv/bin/python bench/naive.py --queue-url URL --topic-arn ARN --count 300
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import boto3
from reference import event_body, pipeline_parser, report

from worker.aws.sqs_wire import MAX_BATCH


def consume(args: argparse.Namespace) -> list[int]:
    """Process messages until done; answers pickup-to-publish ms per message."""
    session = boto3.Session()
    sqs = session.client("sqs")
    metering = session.client("meteringmarketplace")
    sns = session.client("sns")
    latencies: list[int] = []
    empty = 0
    while len(latencies) < args.count and not (latencies and empty >= args.idle_receives > 0):
        messages = sqs.receive_message(
            QueueUrl=args.queue_url, MaxNumberOfMessages=MAX_BATCH, WaitTimeSeconds=1
        ).get("Messages", [])
        received = time.monotonic()
        empty = 0 if messages else empty + 1
        for message in messages:
            token = message.get("Body", "")
            answer = metering.resolve_customer(RegistrationToken=token)
            body = event_body(token, answer)
            sns.publish(TopicArn=args.topic_arn, Message=body)
            latencies.append(int((time.monotonic() - received) * 1000))
            sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return latencies


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return pipeline_parser(__doc__).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    report(args, started, consume(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

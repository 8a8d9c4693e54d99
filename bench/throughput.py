"""Throughput of the worker against a naive baseline, run side by side.

Both consume the same number of tokens from moto server through the ResolveCustomer
emulator (with added latency, as the real API has) and publish to EventBridge. The
baseline is the textbook loop: receive 10, then for each message resolve, publish and
delete one call at a time. The figure that matters is the ratio, not the absolute
rate: these machines are shared and noisy.

    .venv/bin/python bench/throughput.py --tokens 400 --latency-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

import boto3

from worker.events import EVENT_TYPE
from worker.logs import configure_logging
from worker.provision import Resources, provision
from worker.sandbox import clean_environ, emulator_server, local_env, moto_server
from worker.service import run_worker
from worker.settings import LogFormat, Settings, Sink


def enqueue(session: boto3.Session, queue_url: str, count: int) -> None:
    sqs = session.client("sqs")
    run = uuid.uuid4().hex[:6]
    for start in range(0, count, 10):
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(n), "MessageBody": f"bench-{run}-{start + n}"}
                for n in range(min(10, count - start))
            ],
        )


def baseline(session: boto3.Session, resources: Resources, count: int) -> float:
    sqs = session.client("sqs")
    metering = session.client("meteringmarketplace")
    events = session.client("events")
    done = 0
    started = time.monotonic()
    while done < count:
        answer = sqs.receive_message(
            QueueUrl=resources.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in answer.get("Messages", []):
            customer = metering.resolve_customer(RegistrationToken=message["Body"])
            events.put_events(
                Entries=[
                    {
                        "Source": resources.event_source,
                        "DetailType": EVENT_TYPE,
                        "Detail": json.dumps({"product_code": customer["ProductCode"]}),
                        "EventBusName": resources.event_bus_name,
                    }
                ]
            )
            sqs.delete_message(QueueUrl=resources.queue_url, ReceiptHandle=message["ReceiptHandle"])
            done += 1
    return time.monotonic() - started


def regworker(resources: Resources, max_in_flight: int) -> float:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        queue_url=resources.queue_url,
        dlq_url=resources.dlq_url,
        sink=Sink.EVENTBRIDGE,
        event_bus_name=resources.event_bus_name,
        event_source=resources.event_source,
        wait_time_seconds=1,
        max_in_flight=max_in_flight,
        resolve_rate_limit=10_000,
        log_level="ERROR",
        log_format=LogFormat.CONSOLE,
    )
    configure_logging(settings.log_level, settings.log_format)
    started = time.monotonic()
    asyncio.run(run_worker(settings, until_empty=True))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--max-in-flight", type=int, default=50)
    args = parser.parse_args()
    os.environ.clear()
    os.environ.update(clean_environ())
    with moto_server() as moto, emulator_server(["--latency-ms", str(args.latency_ms)]) as emu:
        os.environ.update(local_env(moto.url, emu.url))
        session = boto3.Session(region_name="us-east-1")
        base_resources = provision(session, f"bench-base-{uuid.uuid4().hex[:6]}", Sink.EVENTBRIDGE)
        ours = provision(session, f"bench-ours-{uuid.uuid4().hex[:6]}", Sink.EVENTBRIDGE)
        enqueue(session, base_resources.queue_url, args.tokens)
        enqueue(session, ours.queue_url, args.tokens)
        base_seconds = baseline(session, base_resources, args.tokens)
        our_seconds = regworker(ours, args.max_in_flight)
    base_rate = args.tokens / base_seconds
    our_rate = args.tokens / our_seconds
    print(f"tokens={args.tokens} emulator latency={args.latency_ms} ms")
    print(f"baseline (one at a time, unbatched): {base_seconds:6.1f}s {base_rate:7.1f} tokens/s")
    label = f"regworker (max_in_flight={args.max_in_flight}):"
    print(f"{label:<37} {our_seconds:6.1f}s {our_rate:7.1f} tokens/s")
    print(f"ratio regworker/baseline: {our_rate / base_rate:.1f}x")


if __name__ == "__main__":
    main()

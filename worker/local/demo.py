"""`regworker demo`: the whole flow on an embedded local AWS, in under a minute.

Starts moto server and the ResolveCustomer emulator as child processes, provisions
the queue, the DLQ and the sink (with a tap queue subscribed to it), enqueues a mixed
batch, runs the worker until the queue is drained and prints what happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import boto3

from worker.aws.sqs_wire import MAX_BATCH, batch_results, chunks, drain
from worker.core.events import token_sha256
from worker.core.logs import configure_logging
from worker.core.service import RunReport, run_worker
from worker.core.settings import LogFormat, Settings, Sink
from worker.local.sandbox import emulator_server, local_env, moto_server
from worker.ops.provision import Resources, provision

PRODUCT_CODE = "regworkeremulator00000001"


@dataclass(frozen=True)
class Expected:
    body: str = field(repr=False)  # holds a token
    outcome: str = ""  # "published" or a dead-letter reason
    token: str | None = field(default=None, repr=False)


def demo_batch(good: int) -> list[Expected]:
    run = uuid.uuid4().hex[:6]
    batch = [
        Expected(f"demo-{run}-{n:04d}", "published", f"demo-{run}-{n:04d}") for n in range(good)
    ]
    form_token = f"demo+form/{run}="
    batch += [
        Expected(
            f"x-amzn-marketplace-token=demo%2Bform%2F{run}%3D&x-amzn-marketplace-offer-type=free-trial",
            "published",
            form_token,
        ),
        Expected(
            json.dumps({"registration_token": f"demo-json-{run}", "correlation_id": f"web-{run}"}),
            "published",
            f"demo-json-{run}",
        ),
        Expected(f"throttle-2-{run}", "published", f"throttle-2-{run}"),
        Expected(f"error-2-{run}", "published", f"error-2-{run}"),
        Expected(f"slow-500-{run}", "published", f"slow-500-{run}"),
        Expected(f"invalid-{run}", "InvalidToken"),
        Expected(f"expired-{run}", "ExpiredToken"),
        Expected(f"disabled-{run}", "DisabledApi"),
        Expected(f"product-someoneelse-{run}", "ProductNotAllowed"),
        Expected(f"error-1000-{run}", "RetriesExhausted"),
        Expected("this is not a token", "MalformedMessage"),
        Expected('{"offer_type": "free-trial"}', "MalformedMessage"),
        Expected("x-amzn-marketplace-token=a&x-amzn-marketplace-token=b", "MalformedMessage"),
    ]
    return batch


def enqueue(session: boto3.Session, queue_url: str, batch: list[Expected]) -> None:
    sqs = session.client("sqs")
    for chunk in chunks(batch, MAX_BATCH):
        answer = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": e.body} for i, e in enumerate(chunk)],
        )
        failed = [r.error for r in batch_results(len(chunk), answer) if r.error is not None]
        if failed:
            raise RuntimeError(f"enqueue failed: {failed}")


def demo_settings(resources: Resources) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        queue_url=resources.queue_url,
        dlq_url=resources.dlq_url,
        sink=resources.sink,
        topic_arn=resources.topic_arn,
        event_bus_name=resources.event_bus_name or "default",
        event_source=resources.event_source,
        allowed_product_codes=frozenset({PRODUCT_CODE}),
        max_receives=resources.max_receives,
        wait_time_seconds=1,
        visibility_timeout_seconds=10,
        resolve_budget_seconds=2,
        requeue_base_seconds=1,
        requeue_max_seconds=2,
        resolve_rate_limit=100,
        log_format=LogFormat.CONSOLE,
        log_level="WARNING",
        http_port=0,
    )


def summarize(
    batch: list[Expected],
    report: RunReport,
    events: Sequence[Mapping[str, object]],
    letters: Sequence[Mapping[str, object]],
    sink: Sink,
) -> tuple[str, bool]:
    published = {_event_hash(m, sink) for m in events}
    reasons = Counter(_reason(m) for m in letters)
    want_published = {token_sha256(e.token) for e in batch if e.outcome == "published" and e.token}
    want_reasons = Counter(e.outcome for e in batch if e.outcome != "published")
    ok = published == want_published and reasons == want_reasons
    repeats = len(events) - len(published)
    lines = [
        f"regworker demo ({sink.value}): {len(batch)} messages enqueued",
        f"  tokens published: {len(published & want_published)} of {len(want_published)}",
        f"  CustomerRegistered events read back from the sink: {len(events)}"
        + (
            f" ({repeats} repeated with the same event_id: SQS delivers at least once,"
            " subscribers deduplicate on it)"
            if repeats
            else ""
        ),
        "  dead-letter queue by reason:",
        *[f"    {reason:<18} {count}" for reason, count in sorted(reasons.items())],
        f"  ResolveCustomer retries in place: {report.retries};"
        f" messages requeued with backoff: {report.tally.outcomes['requeued']}",
        f"  time: {report.seconds:.1f}s",
        f"  result: {'OK, every message accounted for' if ok else 'MISMATCH'}",
    ]
    return "\n".join(lines), ok


def _event_hash(message: Mapping[str, object], sink: Sink) -> str:
    document = json.loads(str(message["Body"]))
    event = document["detail"] if sink is Sink.EVENTBRIDGE else document
    return str(event["token_sha256"])


def _reason(message: Mapping[str, object]) -> str:
    attributes = message.get("MessageAttributes")
    if isinstance(attributes, dict) and "dlq_reason" in attributes:
        return str(attributes["dlq_reason"]["StringValue"])
    return "Unknown"


def run_demo(sink: Sink, good: int) -> int:
    started = time.monotonic()
    with moto_server() as moto, emulator_server(["--product-code", PRODUCT_CODE]) as emulator:
        os.environ.update(local_env(moto.url, emulator.url))
        session = boto3.Session(region_name="us-east-1")
        resources = provision(
            session, f"demo-{uuid.uuid4().hex[:6]}", sink, max_receives=3, tap=True
        )
        batch = demo_batch(good)
        enqueue(session, resources.queue_url, batch)
        print(f"moto server {moto.url}, emulator {emulator.url}; running the worker...", flush=True)
        settings = demo_settings(resources)
        configure_logging(settings.log_level, settings.log_format)
        report = asyncio.run(run_worker(settings, until_empty=True))
        sqs = session.client("sqs")
        events = drain(sqs, resources.tap_queue_url, empty_polls=1)
        letters = drain(sqs, resources.dlq_url, empty_polls=1)
    text, ok = summarize(batch, report, events, letters, sink)
    print(text)
    print(f"  total with start-up and clean-up: {time.monotonic() - started:.1f}s")
    return 0 if ok else 1

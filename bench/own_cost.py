"""The worker's own CPU per message, without AWS: the pipeline bench's worker and
reference, each around the same stand-in clients that answer at once.

``compare.py --scenarios pipeline`` runs both against LocalStack and the emulator, where
botocore, aiohttp and a shared, noisy machine make up most of each process's CPU and
the run-to-run spread (10-15%) is as large as the worker's own bookkeeping. Here the
clients are stand-ins (each call yields to the loop once, as a real call does, and
answers with the fields the worker reads), so what is left is the worker's own work per message: the
consumer, handler, flow controller, heartbeat, fault hold, batchers, event, log line
and spans, against what the reference (``bench/reference.py``'s lanes) does around the
same calls. The two alternate in one process, ``--rounds`` times; the least of each is
printed with the ratio (on a shared machine noise only ever adds CPU time). One process,
so the reference runs at the worker's GC threshold (compare.py's "reference, GC as
worker"). Last, what the event's SNS message attributes cost in botocore's query
serializer alone.

    .venv/bin/python bench/own_cost.py                  # 20,000 messages, 5 rounds
    .venv/bin/python bench/own_cost.py --profile FILE   # the worker's run under cProfile

The worker runs as in the pipeline scenario: default settings (no ``REGWORKER_*`` or
``AWS_*`` variable is read), the ceiling lifted and started there, 160 messages in hand,
the metrics' histograms observed, JSON logs at INFO (to ``--log-file``, default
/dev/null: the line is rendered and written either way). Not there: the HTTP server and
the health ticker, which do not run per message.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlencode

from botocore.serialize import create_serializer
from botocore.session import get_session
from reference import Clients, Progress, lane

from worker.aws.clients import AwsClients
from worker.cli.run import GC_YOUNG_THRESHOLD
from worker.core.events import ResolvedCustomer, customer_registered, encode, sns_message_attributes
from worker.core.fault_hold import FaultHold
from worker.core.logs import configure_logging
from worker.core.metrics import Metrics
from worker.core.probes import Component, Probe
from worker.core.request import RegistrationRequest
from worker.core.service import assemble
from worker.core.settings import Settings, Sink
from worker.core.tally import Tally
from worker.local.sandbox import use_clean_environ

QUEUE_URL: Final = "http://127.0.0.1:1/000000000000/own-cost"
DLQ_URL: Final = "http://127.0.0.1:1/000000000000/own-cost-dlq"
TOPIC_ARN: Final = "arn:aws:sns:us-east-1:000000000000:own-cost"
IN_HAND: Final = 160  # as compare.py's pipeline: the reference's 16 lanes of 10
LIFTED: Final = 10_000.0
EMPTY_POLL_SECONDS: Final = 0.05


class Meta:
    endpoint_url = "http://127.0.0.1:1"


class StandInSqs:
    """ReceiveMessage hands out ``count`` fresh messages, ten at most a call (an empty
    receive waits ``EMPTY_POLL_SECONDS``, a long poll cut short, so that the worker's
    receivers do not spin at the end); the batch calls succeed for every entry."""

    meta = Meta()

    def __init__(self, count: int) -> None:
        self.left = count

    async def receive_message(self, **request: Any) -> dict[str, Any]:
        await asyncio.sleep(0 if self.left else EMPTY_POLL_SECONDS)
        taken = min(int(request.get("MaxNumberOfMessages", 1)), self.left)
        self.left -= taken
        return {"Messages": [self._message(n) for n in range(taken)]}

    async def delete_message_batch(self, **request: Any) -> dict[str, Any]:
        return await self._all_succeed(request["Entries"])

    async def change_message_visibility_batch(self, **request: Any) -> dict[str, Any]:
        return await self._all_succeed(request["Entries"])

    async def send_message_batch(self, **request: Any) -> dict[str, Any]:
        return await self._all_succeed(request["Entries"])

    async def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        names = ("", "NotVisible", "Delayed")
        return {"Attributes": {f"ApproximateNumberOfMessages{n}": "0" for n in names}}

    def _message(self, n: int) -> dict[str, Any]:
        token = f"own-cost-{self.left}-{n}-{uuid.uuid4().hex}"
        return {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": token * 3,
            "Body": token,
            "Attributes": {"ApproximateReceiveCount": "1"},
        }

    @staticmethod
    async def _all_succeed(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"Successful": [{"Id": entry["Id"]} for entry in entries], "Failed": []}


class StandInMetering:
    meta = Meta()

    async def resolve_customer(self, **request: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {
            "ProductCode": "owncost0000000000000000001",
            "CustomerAWSAccountId": "123456789012",
            "LicenseArn": "arn:aws:license-manager::123456789012:license:l-owncost",
            "CustomerIdentifier": "",
        }


class StandInSns:
    meta = Meta()

    async def publish_batch(self, **request: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        entries = request["PublishBatchRequestEntries"]
        return {"Successful": [{"Id": e["Id"], "MessageId": e["Id"]} for e in entries]}


@dataclass
class Round:
    worker_us: float
    reference_us: float


def settings() -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        queue_url=QUEUE_URL,
        dlq_url=DLQ_URL,
        sink=Sink.SNS,
        topic_arn=TOPIC_ARN,
        resolve_rate_limit=LIFTED,
        resolve_start_rate=LIFTED,
        max_in_flight=IN_HAND,
        http_port=0,
    )


async def run_worker(count: int) -> float:
    """CPU seconds for ``count`` messages through the assembled worker."""
    chosen = settings()
    clients = AwsClients(
        sqs=cast(Any, StandInSqs(count)),
        metering=cast(Any, StandInMetering()),
        sns=cast(Any, StandInSns()),
        events=None,
        dynamodb=None,
    )

    async def works() -> None:
        return None

    probes: dict[Component, Probe] = dict.fromkeys(Component, works)
    hold = FaultHold(probes, max_wait=chosen.fault_probe_max_seconds)
    tally = Tally(metrics=Metrics())
    worker = assemble(chosen, clients, hold, tally)
    stop = asyncio.Event()
    started = time.process_time()
    watcher = asyncio.create_task(stop_when_settled(tally, count, stop))
    await worker.consumer.run(stop)
    await worker.close()
    await watcher
    if tally.outcomes != {"published": count}:
        raise SystemExit(f"own_cost: the worker's outcomes were {dict(tally.outcomes)}")
    return time.process_time() - started


async def stop_when_settled(tally: Tally, count: int, stop: asyncio.Event) -> None:
    """The worker has no end of its own but an empty queue: look every 50 ms."""
    while tally.outcomes.total() < count:  # noqa: ASYNC110 (a count, not an event)
        await asyncio.sleep(0.05)
    stop.set()


async def run_reference(count: int) -> float:
    """CPU seconds for ``count`` messages through the reference's 16 lanes."""
    clients = Clients(
        sqs=cast(Any, StandInSqs(count)),
        metering=cast(Any, StandInMetering()),
        sns=cast(Any, StandInSns()),
    )
    args = argparse.Namespace(queue_url=QUEUE_URL, topic_arn=TOPIC_ARN, worker_wire=False)
    progress = Progress(count, idle_limit=0)
    started = time.process_time()
    async with asyncio.TaskGroup() as group:
        for _ in range(16):
            group.create_task(lane(clients, args, progress))
    return time.process_time() - started


def publish_batch_serialization(batches: int = 500) -> tuple[float, float]:
    """CPU microseconds to turn one PublishBatch of ten events into its request body, as
    botocore does (SNS speaks the query protocol), with the worker's entries and with
    without their message attributes (the plain reference's)."""
    sns = get_session().get_service_model("sns")
    operation = sns.operation_model("PublishBatch")
    serializer = create_serializer("query")
    customer = ResolvedCustomer("owncost0000000000000000001", None, "123456789012", "arn:l")
    event = customer_registered(RegistrationRequest("own-cost-token", "token"), customer)
    body = encode(event)
    plain = [{"Id": str(n), "Message": body} for n in range(10)]
    entries = [{**entry, "MessageAttributes": sns_message_attributes(event)} for entry in plain]

    def per_batch(batch: Sequence[Mapping[str, Any]]) -> float:
        request = {"TopicArn": TOPIC_ARN, "PublishBatchRequestEntries": batch}
        started = time.process_time()
        for _ in range(batches):
            body = serializer.serialize_to_request(request, operation)["body"]
            urlencode(body, doseq=True)  # as botocore's AWSRequest prepares a query body
        return (time.process_time() - started) / batches * 1e6

    return per_batch(entries), per_batch(plain)


def measure(run: Callable[[int], Coroutine[Any, Any, float]], count: int) -> float:
    """Microseconds of CPU per message, after a collection so rounds start alike."""
    gc.collect()
    return asyncio.run(run(count)) / count * 1e6


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="a round (%(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="(%(default)s)")
    parser.add_argument("--log-file", type=Path, default=Path("/dev/null"))
    parser.add_argument("--profile", type=Path, help="cProfile the worker's round to FILE")
    parser.add_argument("--json-out", type=Path)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    use_clean_environ()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    with args.log_file.open("w") as logs:
        sys.stderr.flush()
        saved, sys.stderr = sys.stderr, logs
        configure_logging("INFO")
        try:
            if args.profile:
                found = {"n": args.messages}
                cProfile.runctx("measure(run_worker, n)", globals(), found, str(args.profile))
                return 0
            rounds = [
                Round(measure(run_worker, args.messages), measure(run_reference, args.messages))
                for _ in range(args.rounds)
            ]
        finally:
            sys.stderr = saved
    worker = min(r.worker_us for r in rounds)
    reference = min(r.reference_us for r in rounds)
    for n, r in enumerate(rounds, 1):
        print(f"round {n}: worker {r.worker_us:.0f} us/msg, reference {r.reference_us:.0f} us/msg")
    print(
        f"least of {len(rounds)} rounds of {args.messages}: worker {worker:.0f} us CPU per"
        f" message, reference {reference:.0f}, worker - reference {worker - reference:.0f} us,"
        f" ratio {worker / reference:.2f}"
    )
    attributed, plain = publish_batch_serialization()
    print(
        f"PublishBatch of 10 through botocore's query serializer: {attributed:.0f} us with"
        f" the event's message attributes, {plain:.0f} us without"
        f" ({(attributed - plain) / 10:.0f} us a message)"
    )
    if args.json_out:
        table = {
            "messages": args.messages,
            "worker_us": worker,
            "reference_us": reference,
            "rounds": [vars(r) for r in rounds],
            "publish_batch_serialization_us": {"attributes": attributed, "plain": plain},
        }
        args.json_out.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

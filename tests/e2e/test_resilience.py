"""The worker under trouble where the wire matters: heartbeats and visibility on a real
queue, signals to a real process, real sockets cut by a proxy, batch answers from real
services, SNS FIFO deduplication, a faulty ResolveCustomer emulator.

Moved in-process, with their assertions (tests/core/test_consumer.py and
test_handler.py name the test that now holds each):
test_shutdown_finishes_started_and_hands_back_the_rest,
test_a_publish_under_way_at_the_end_of_the_grace_is_finished_not_cut,
test_a_malformed_message_being_dead_lettered_at_shutdown_is_not_handed_back,
test_idempotency_table_gives_one_event_per_token,
test_fifo_failure_holds_back_only_its_group,
test_a_dlq_gone_after_start_holds_the_poison_message_until_it_is_back,
test_a_dead_receive_loop_is_never_silent and
test_a_receive_refused_while_the_probe_passes_backs_off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiobotocore.session import get_session
from mypy_boto3_sqs.client import SQSClient
from structlog.testing import capture_logs

from tests.support import REGION, drain, event_of, make_settings, send_all, tag, unique_name
from tests.tcp_proxy import FlakyProxy, flaky_proxy
from worker.aws.sqs import SourceQueue
from worker.core.errors import PublishError
from worker.core.events import event_id_for
from worker.core.heartbeat import VisibilityHeartbeat
from worker.core.publisher import Event, Outgoing, SnsPublisher
from worker.core.service import RunReport, run_worker
from worker.core.settings import Sink
from worker.local.sandbox import clean_environ, emulator_server
from worker.ops.provision import Resources, create_queues, provision


def events(sqs: SQSClient, resources: Resources) -> list[dict[str, Any]]:
    return [event_of(m, resources.sink) for m in drain(sqs, resources.tap_queue_url)]


def receive_for(sqs: SQSClient, queue_url: str, seconds: float) -> list[Any]:
    """What another consumer gets from the queue during ``seconds``."""
    seen: list[Any] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1, VisibilityTimeout=30)
        seen.extend(answer.get("Messages", []))
    return seen


def worker_process(
    resources: Resources, aws_env: dict[str, str], cwd: Path, **settings: str
) -> subprocess.Popen[str]:
    """`regworker run` as its own process, on the local services, JSON logs on stderr."""
    env = {
        **clean_environ(),
        **aws_env,
        **resources.settings_env(),
        "REGWORKER_WAIT_TIME_SECONDS": "1",
        "REGWORKER_HTTP_PORT": "0",
        **settings,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "run"],
        env=env,
        cwd=cwd,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until_started(worker: subprocess.Popen[str]) -> str:
    """The worker's stderr up to its ``worker_started`` line: a signal sent after a fixed
    sleep reached a worker still importing on a loaded machine, before its handler was
    installed. Raises if the worker exits first. Read the rest with ``read_rest``: the
    stream has buffered more than these lines, which ``communicate()`` would skip."""
    assert worker.stderr is not None
    lines = []
    for line in worker.stderr:
        lines.append(line)
        if '"worker_started"' in line:
            return "".join(lines)
    raise AssertionError(f"the worker exited before it started:\n{''.join(lines)}")


def read_rest(worker: subprocess.Popen[str], timeout: float) -> str:
    """The rest of the worker's stderr, through the same buffered stream, once it exits."""
    assert worker.stderr is not None
    rest = worker.stderr.read()
    worker.wait(timeout=timeout)
    return rest


async def test_heartbeat_keeps_a_slow_message_invisible(
    sqs: SQSClient, aws_env: dict[str, str]
) -> None:
    queue_url, _ = create_queues(sqs, unique_name(), max_receives=3)
    send_all(sqs, queue_url, ["held"])
    async with get_session().create_client("sqs", region_name=REGION) as client:
        queue = SourceQueue(client, queue_url, linger=0.01)
        [message] = await queue.receive(1, 1, visibility_timeout=2)
        heartbeat = VisibilityHeartbeat(queue, visibility_timeout=2)
        heartbeat.hold(message)
        beating = asyncio.create_task(heartbeat.run())
        stolen = await asyncio.to_thread(receive_for, sqs, queue_url, 5.0)
        assert stolen == []  # 2.5 timeouts later nobody else got it
        assert heartbeat.extensions >= 3
        heartbeat.release(message)
        await asyncio.sleep(2.5)
        [again] = await asyncio.to_thread(receive_for, sqs, queue_url, 1.5)
        assert again["Body"] == "held"
        # The old receipt handle is stale now: a beat drops it instead of crashing.
        beating.cancel()
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=again["ReceiptHandle"])
        heartbeat.hold(message)
        await asyncio.sleep(1.2)
        with capture_logs() as logs:
            await heartbeat.beat()
            await heartbeat.beat()  # dropped: not tried again
        await queue.close()
    assert [e["event"] for e in logs] == ["visibility_extend_refused"]


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_fifo_messages_behind_a_slow_head_are_kept_invisible_from_receipt(
    sqs: SQSClient, resources: Resources
) -> None:
    """Three 4 s messages of one group, a 10 s visibility: the third waits 8 s behind the
    others. Watched only from its turn, it became visible at 10 s while in hand and was
    received and published a second time."""
    queue_url, dlq_url = create_queues(sqs, unique_name(), max_receives=5, fifo=True)
    fifo = dataclasses.replace(resources, queue_url=queue_url, dlq_url=dlq_url)
    t = tag()
    for n in range(3):
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=f"slow-4000-{t}-{n}",
            MessageGroupId="A",
            MessageDeduplicationId=f"{n}-{t}",
        )
    report = await run_worker(make_settings(fifo), until_empty=True)
    assert report.tally.outcomes == {"published": 3}
    published = [e["event_id"] for e in events(sqs, resources)]
    assert sorted(published) == sorted(event_id_for(f"slow-4000-{t}-{n}") for n in range(3))


@pytest.mark.parametrize("resources", ["eventbridge"], indirect=True)
def test_sigterm_exits_zero_and_loses_nothing(
    sqs: SQSClient, resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    tokens = [f"slow-800-{tag()}" for _ in range(12)]
    send_all(sqs, resources.queue_url, tokens)
    worker = worker_process(
        resources,
        aws_env,
        tmp_path,
        REGWORKER_RESOLVE_RATE_LIMIT="3",
        REGWORKER_SHUTDOWN_GRACE_SECONDS="5",
    )
    head = read_until_started(worker)
    time.sleep(1.5)  # messages in hand, some published
    worker.send_signal(signal.SIGTERM)
    stderr = head + read_rest(worker, timeout=20)
    assert worker.returncode == 0, stderr
    assert "Traceback" not in stderr
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert "stopping" in {r["event"] for r in records}
    # The person at the terminal is told what the worker waits for and how to force it.
    assert "regworker run: stopping (SIGTERM): waiting for" in stderr
    assert "send it again to stop at once" in stderr
    published = len(events(sqs, resources))
    left = len(drain(sqs, resources.queue_url))
    assert published + left == len(tokens)
    assert published >= 1


async def run_through_outage(
    endpoint_variable: str,
    resources: Resources,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[RunReport, list[MutableMapping[str, Any]], FlakyProxy]:
    """Run the worker until drained with one service behind a proxy that is cut for
    8 s once the worker has started (the start-up check saw it answer): longer than
    botocore's own three tries, so the worker's handling shows."""
    async with flaky_proxy(aws_env["AWS_ENDPOINT_URL"]) as proxy:
        monkeypatch.setenv(endpoint_variable, proxy.url)

        def cut_for_a_while(_consumer: object) -> None:
            proxy.cut()
            asyncio.get_running_loop().call_later(8.0, proxy.restore)

        with capture_logs() as logs:
            report = await run_worker(
                make_settings(resources), until_empty=True, on_consumer=cut_for_a_while
            )
    return report, logs, proxy


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_sqs_outage_is_retried_reported_and_resumed(
    sqs: SQSClient, resources: Resources, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = [f"outage-{tag()}" for _ in range(5)]
    send_all(sqs, resources.queue_url, tokens)
    report, logs, proxy = await run_through_outage(
        "AWS_ENDPOINT_URL_SQS", resources, aws_env, monkeypatch
    )
    names = [entry["event"] for entry in logs]
    assert "receive_failed" in names
    assert "receive_recovered" in names
    assert proxy.refused > 0
    assert report.tally.outcomes["published"] == len(tokens)
    assert sorted(e["event_id"] for e in events(sqs, resources)) == sorted(
        event_id_for(t) for t in tokens
    )


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_sink_outage_keeps_messages_until_it_is_back(
    sqs: SQSClient, resources: Resources, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = [f"sink-down-{tag()}" for _ in range(5)]
    send_all(sqs, resources.queue_url, tokens)
    report, logs, _ = await run_through_outage(
        "AWS_ENDPOINT_URL_SNS", resources, aws_env, monkeypatch
    )
    held = [entry for entry in logs if entry["event"] in {"outage", "fault_cleared"}]
    assert [(entry["event"], entry["component"]) for entry in held] == [
        ("outage", "sink"),
        ("fault_cleared", "sink"),
    ]
    # Kept in hand through the outage: nothing went back to the queue to spend receives.
    assert report.tally.outcomes["kept"] == 0
    assert report.tally.outcomes["requeued"] == 0
    assert report.tally.outcomes["published"] == len(tokens)
    published = [e["event_id"] for e in events(sqs, resources)]
    assert sorted(published) == sorted(event_id_for(t) for t in tokens)  # once each
    assert drain(sqs, resources.dlq_url) == []


class OversizeOneEntry(SnsPublisher):
    """Makes SNS refuse one entry of a batch (a message over 256 KiB)."""

    def _entry(self, index: int, outgoing: Outgoing) -> Any:
        entry = super()._entry(index, outgoing)
        if outgoing.event["metadata"].get("refuse"):
            entry["Message"] = "x" * (256 * 1024 + 1)
        return entry


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_a_partly_failed_publish_batch_fails_only_its_entry(
    sqs: SQSClient, resources: Resources
) -> None:
    async with get_session().create_client("sns", region_name=REGION) as client:
        publisher = OversizeOneEntry(client, resources.topic_arn, linger=0.2)
        batch = [_event(n, refuse=(n == 1)) for n in range(3)]
        results = await asyncio.gather(
            *(publisher.publish(event) for event in batch), return_exceptions=True
        )
        await publisher.close()
    assert results[0] is None
    assert isinstance(results[1], PublishError)
    assert "InvalidParameter" in str(results[1])
    assert results[2] is None
    published = {e["event_id"] for e in events(sqs, resources)}
    assert published == {batch[0]["event_id"], batch[2]["event_id"]}


def _event(n: int, *, refuse: bool) -> Event:
    return {
        "event_id": str(uuid.uuid4()),
        "product_code": "p",
        "metadata": {"refuse": "yes"} if refuse else {},
        "n": n,
    }


def test_fifo_end_to_end_with_an_sns_fifo_topic(sqs: SQSClient, session: boto3.Session) -> None:
    """FIFO queue in, FIFO topic out: each event goes to the customer's message group and
    carries event_id as its deduplication id, so a token enqueued twice within SNS's
    5-minute window reaches subscribers once."""
    resources = provision(session, unique_name(), Sink.SNS, max_receives=3, tap=True, fifo=True)
    assert resources.topic_arn.endswith(".fifo")
    t = tag()
    tokens = [f"fifo-{n}-{t}" for n in range(3)]
    for n, body in enumerate([*tokens, tokens[0]]):
        sqs.send_message(
            QueueUrl=resources.queue_url,
            MessageBody=body,
            MessageGroupId=f"web-{n % 2}",
            MessageDeduplicationId=f"{n}-{t}",
        )
    report = asyncio.run(run_worker(make_settings(resources), until_empty=True))
    assert report.tally.outcomes["published"] == 4  # the worker published the repeat too
    received = drain(sqs, resources.tap_queue_url)
    assert sorted(event_of(m, Sink.SNS)["event_id"] for m in received) == sorted(
        event_id_for(token) for token in tokens
    )  # SNS FIFO dropped the repeat by its deduplication id
    for message in received:
        event = event_of(message, Sink.SNS)
        assert message["Attributes"]["MessageGroupId"] == event["customer_identifier"]


@pytest.mark.parametrize("resources", ["eventbridge"], indirect=True)
def test_a_second_ctrl_c_stops_at_once_with_exit_130(
    sqs: SQSClient, resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    tokens = [f"slow-6000-{tag()}" for _ in range(6)]
    send_all(sqs, resources.queue_url, tokens)
    worker = worker_process(
        resources,
        aws_env,
        tmp_path,
        REGWORKER_RESOLVE_TIMEOUT_SECONDS="10",
        REGWORKER_SHUTDOWN_GRACE_SECONDS="60",
    )
    head = read_until_started(worker)
    time.sleep(1.5)  # every message is in a 6 s ResolveCustomer call now
    worker.send_signal(signal.SIGINT)
    time.sleep(1.0)
    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGINT)
    stderr = head + read_rest(worker, timeout=30)
    assert time.monotonic() - stopped_at < 10  # not the 60 s grace period
    assert worker.returncode == 130, stderr  # a forced exit is not a clean one
    assert "Traceback" not in stderr
    assert "second_signal" in stderr
    assert "message(s) to finish (up to 60s)" in stderr
    # Nothing was deleted unpublished: each token is either published or comes back.
    published = len(events(sqs, resources))
    time.sleep(1.0)
    sqs_left = boto3.client("sqs").get_queue_attributes(
        QueueUrl=resources.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    left = sum(int(v) for v in sqs_left.values())
    assert published + left == len(tokens)


@pytest.mark.parametrize("resources", ["eventbridge"], indirect=True)
async def test_a_faulty_slow_throttling_api_loses_nothing(
    sqs: SQSClient, resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half of all calls fail with 500, every call is slow, and the API throttles above
    20 calls/s: every token is still published exactly once, in time."""
    tokens = [f"rough-{n}-{tag()}" for n in range(30)]
    send_all(sqs, resources.queue_url, tokens)
    faults = ["--fault-rate", "0.5", "--latency-ms", "50", "--tps", "20", "--seed", "7"]
    with emulator_server(faults) as rough:
        monkeypatch.setenv("AWS_ENDPOINT_URL_MARKETPLACE_METERING", rough.url)
        report = await run_worker(
            make_settings(resources, max_receives=10, resolve_rate_limit=100), until_empty=True
        )
    assert report.retries >= 10
    assert report.tally.outcomes["published"] == len(tokens)
    assert report.tally.outcomes["dead_lettered"] == 0
    published = sorted(e["event_id"] for e in events(sqs, resources))
    assert published == sorted(event_id_for(t) for t in tokens)

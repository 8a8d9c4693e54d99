"""The benches' like-for-like parts. bench/own_cost.py runs the worker as assembled for
production around stand-in clients: a worker that starts calling a client method the
stand-ins lack, or stops publishing, breaks the bench before anyone reruns it. And
bench/reference.py's --worker-wire must keep making the worker's requests."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import own_cost
import reference

from worker.aws.sqs_wire import RECEIVE_MESSAGE_ATTRIBUTES, RECEIVE_SYSTEM_ATTRIBUTES
from worker.core.publisher import Outgoing, SnsPublisher

ROOT = Path(__file__).resolve().parents[2]


def test_the_own_cost_bench_runs_both_contenders_to_the_end(tmp_path: Path) -> None:
    out = tmp_path / "own.json"
    logs = tmp_path / "worker.log"
    command = [sys.executable, "bench/own_cost.py", "--rounds", "1", "--messages", "400"]
    finished = subprocess.run(
        [*command, "--json-out", str(out), "--log-file", str(logs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    table = json.loads(out.read_text())
    assert table["worker_us"] > 0
    assert table["reference_us"] > 0
    assert set(table["publish_batch_serialization_us"]) == {"attributes", "plain"}
    published = [line for line in logs.read_text().splitlines() if '"published"' in line]
    assert len(published) == 400


async def test_the_reference_with_the_worker_wire_makes_the_worker_requests() -> None:
    """The pipeline's "GC and wire as worker" row stands for the worker's requests only
    while it sends what the worker sends: the receive's attribute names, each event's
    SNS message attributes (checked against the worker's own publisher)."""
    sent: dict[str, Any] = {}

    class Sqs(own_cost.StandInSqs):
        async def receive_message(self, **request: Any) -> dict[str, Any]:
            sent.setdefault("receive", request)
            return await super().receive_message(**request)

    class Sns(own_cost.StandInSns):
        async def publish_batch(self, **request: Any) -> dict[str, Any]:
            sent["entries"] = request["PublishBatchRequestEntries"]
            return await super().publish_batch(**request)

    clients = reference.Clients(
        cast(Any, Sqs(1)), cast(Any, own_cost.StandInMetering()), cast(Any, Sns())
    )
    args = argparse.Namespace(queue_url="q", topic_arn="t", worker_wire=True)
    await reference.lane(clients, args, reference.Progress(1, idle_limit=0))

    worker_sns = own_cost.StandInSns()
    publisher = SnsPublisher(cast(Any, worker_sns), "t")
    [entry] = sent["entries"]
    assert (
        entry["MessageAttributes"]
        == publisher._entry(0, Outgoing.of(json.loads(entry["Message"])))["MessageAttributes"]
    )
    receive = sent["receive"]
    assert receive["MessageSystemAttributeNames"] == RECEIVE_SYSTEM_ATTRIBUTES
    assert receive["MessageAttributeNames"] == RECEIVE_MESSAGE_ATTRIBUTES

"""The progress line's figures and the CloudWatch EMF documents."""

from __future__ import annotations

import asyncio
import io
import json

from tests.core.rig import watched
from worker.core.progress import EMF_UNITS, emf_document, report_progress, since, snapshot
from worker.core.tally import Outcome, Tally


def test_counters_are_reported_as_the_change_and_gauges_as_they_are() -> None:
    tally = Tally()
    worker = watched(tally)
    tally.received = 10
    before = snapshot(worker)
    tally.received = 25
    tally.count(Outcome.PUBLISHED)
    tally.held = 3
    change = since(snapshot(worker), before)
    assert change["MessagesReceived"] == 15
    assert change["MessagesPublished"] == 1
    assert change["MessagesHeld"] == 3


def test_an_emf_document_declares_every_value_it_carries() -> None:
    document = json.loads(emf_document({"MessagesReceived": 4, "MessagesHeld": 1}, "shop", 1.5))
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert document["_aws"]["Timestamp"] == 1500
    assert directive["Namespace"] == "regworker"
    assert directive["Dimensions"] == [["Queue"]]
    assert {m["Name"] for m in directive["Metrics"]} == {"MessagesReceived", "MessagesHeld"}
    assert (document["Queue"], document["MessagesReceived"]) == ("shop", 4)


async def test_each_interval_writes_one_emf_line() -> None:
    tally = Tally()
    out = io.StringIO()
    task = asyncio.create_task(report_progress(watched(tally), 0.05, emf_queue="shop", out=out))
    await asyncio.sleep(0)  # the report takes its first snapshot
    tally.received = 7
    await asyncio.sleep(0.08)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    first = json.loads(out.getvalue().splitlines()[0])
    assert first["MessagesReceived"] == 7
    assert set(first) == {"_aws", "Queue", *EMF_UNITS}

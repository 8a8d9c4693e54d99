"""/metrics, /healthz and /readyz of a real worker run (moto server, the emulator), and
the counters scraped against what the sink and the DLQ hold afterwards."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from mypy_boto3_sqs.client import SQSClient
from prometheus_client.parser import text_string_to_metric_families

from tests.support import dlq_by_body, drain, event_of, make_settings, send_all, tag
from worker.core import health
from worker.core.metrics import Metrics
from worker.core.service import package_version, run_worker
from worker.core.settings import Sink
from worker.core.startup_check import StartupCheckFailed
from worker.local.emulator import DEFAULT_PRODUCT_CODE
from worker.local.sandbox import free_port
from worker.ops.provision import Resources

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def get(port: int, path: str) -> tuple[int, str]:
    """The status and body; status 0 while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError:
        return 0, ""


async def until_serving(port: int) -> None:
    async with asyncio.timeout(30):
        while (await asyncio.to_thread(get, port, "/healthz"))[0] != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def scrape(port: int) -> Samples:
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def settled(samples: Samples, outcome: str) -> float:
    return samples.get(("regworker_messages_settled_total", (("outcome", outcome),)), 0)


async def wait_for(port: int, done: int) -> Samples:
    """Scrape until ``done`` messages are published or dead-lettered."""
    await until_serving(port)
    async with asyncio.timeout(60):
        while True:
            samples = await asyncio.to_thread(scrape, port)
            if settled(samples, "published") + settled(samples, "dead_lettered") >= done:
                return samples
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("resources", [Sink.EVENTBRIDGE], indirect=True)
async def test_scraped_counters_equal_what_the_sink_and_the_dlq_hold(
    sqs: SQSClient, resources: Resources
) -> None:
    t = tag()
    good = [f"tok-a-{t}", f"tok-b-{t}", f"throttle-1-{t}"]
    bad = {f"invalid-{t}": "InvalidToken", "not a token": "MalformedMessage"}
    send_all(sqs, resources.queue_url, [*good, *bad])
    port = free_port()
    settings = make_settings(
        resources,
        http_port=port,
        http_host="127.0.0.1",
        allowed_product_codes=frozenset({DEFAULT_PRODUCT_CODE}),
    )
    stop = asyncio.Event()
    run = asyncio.create_task(run_worker(settings, stop, metrics=Metrics()))
    samples = await wait_for(port, len(good) + len(bad))
    assert await asyncio.to_thread(get, port, "/readyz") == (200, "ready\n")
    assert await asyncio.to_thread(get, port, "/healthz") == (200, "live\n")
    stop.set()
    report = await run

    events = [event_of(m, resources.sink) for m in drain(sqs, resources.tap_queue_url)]
    letters = dlq_by_body(sqs, resources)
    assert settled(samples, "published") == len({e["event_id"] for e in events}) == len(good)
    assert settled(samples, "dead_lettered") == len(letters) == len(bad)
    reasons = Counter(attributes["dlq_reason"] for attributes in letters.values())
    for reason, count in reasons.items():
        assert samples[("regworker_dead_letters_total", (("reason", reason),))] == count
    assert samples[("regworker_dead_letters_total", (("reason", "ExpiredToken"),))] == 0
    assert samples[("regworker_messages_received_total", ())] >= len(good) + len(bad)
    calls = {
        labels[0][1]: value
        for (name, labels), value in samples.items()
        if name == "regworker_resolve_calls_total"
    }
    assert calls["success"] == len(good)
    assert calls["throttled"] >= 1
    assert calls["InvalidTokenException"] == 1
    timed = samples[("regworker_resolve_duration_seconds_count", ())]
    assert timed == sum(calls.values())
    assert samples[("regworker_message_duration_seconds_count", ())] >= len(good) + len(bad)
    assert samples[("regworker_build_info", (("version", package_version()),))] == 1
    assert samples[("regworker_fault_hold", (("component", "sink"),))] == 0
    assert report.tally.outcomes["published"] == len(good)


@pytest.mark.parametrize("resources", [Sink.EVENTBRIDGE], indirect=True)
async def test_a_taken_port_stops_start_up_naming_the_setting(
    sqs: SQSClient, resources: Resources
) -> None:
    port = free_port()
    settings = make_settings(resources, http_port=port, http_host="127.0.0.1")
    stop = asyncio.Event()
    first = asyncio.create_task(run_worker(settings, stop))
    await until_serving(port)
    taken = rf"REGWORKER_HTTP_PORT: cannot listen on 127.0.0.1:{port}"
    with pytest.raises(StartupCheckFailed, match=taken):
        await run_worker(settings)
    stop.set()
    await first


@pytest.mark.parametrize("resources", [Sink.EVENTBRIDGE], indirect=True)
async def test_healthz_fails_while_the_event_loop_is_blocked(
    resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP server's own thread answers 503 while the loop is stuck in a blocking call."""
    monkeypatch.setattr(health, "LOOP_STALL_SECONDS", 0.5)
    port = free_port()
    settings = make_settings(resources, http_port=port, http_host="127.0.0.1")
    stop = asyncio.Event()
    run = asyncio.create_task(run_worker(settings, stop))
    await until_serving(port)
    answers: list[tuple[int, str]] = []

    def ask_later() -> None:
        time.sleep(1.0)
        answers.append(get(port, "/healthz"))

    probe = threading.Thread(target=ask_later)
    probe.start()
    time.sleep(1.5)  # noqa: ASYNC251 (the point: a blocking call stalls the event loop)
    probe.join()
    ((status, reason),) = answers
    assert status == 503
    assert reason.startswith("event loop stalled for ")  # 1-2 s: ticks come every second
    await asyncio.sleep(1.2)  # the loop ticks again
    assert await asyncio.to_thread(get, port, "/healthz") == (200, "live\n")
    stop.set()
    await run

"""Traces across a real SQS round trip (moto server, the emulator): the enqueue helper's
span, the worker's span per message and its children, and the context the event carries
on. Spans are read back with the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from mypy_boto3_sqs.client import SQSClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import REGION, drain, make_settings, tag
from worker.core.publisher import EventBridgePublisher, Outgoing
from worker.core.service import run_worker
from worker.core.settings import Sink
from worker.local.emulator import DEFAULT_PRODUCT_CODE
from worker.ops.enqueue import Enqueuer
from worker.ops.provision import Resources

XRAY_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
XRAY_PARENT = "53995c3f42cd8ad8"


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


async def run(resources: Resources) -> None:
    settings = make_settings(resources, allowed_product_codes=frozenset({DEFAULT_PRODUCT_CODE}))
    await run_worker(settings, until_empty=True)


@pytest.mark.parametrize("resources", [Sink.SNS], indirect=True)
async def test_the_trace_runs_from_enqueue_to_the_published_event(
    sqs: SQSClient, resources: Resources, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    with trace.get_tracer("landing-page").start_as_current_span("POST /marketplace") as root:
        Enqueuer(resources.queue_url, sqs_client=sqs, region=REGION).enqueue(f"tok-{tag()}")
    root_trace, root_span = (
        f"{root.get_span_context().trace_id:032x}",
        (f"{root.get_span_context().span_id:016x}"),
    )
    await run(resources)

    spans = span_exporter.get_finished_spans()
    (message,) = named(spans, "regworker.message")
    assert hex_ids(message)[0] == root_trace
    assert message.parent is not None
    assert f"{message.parent.span_id:016x}" == root_span
    assert message.kind is trace.SpanKind.CONSUMER
    assert message.attributes is not None
    assert message.attributes["regworker.outcome"] == "published"
    message_span = hex_ids(message)[1]
    (resolve,) = named(spans, "ResolveCustomer")
    (publish,) = named(spans, "publish")
    for child in (resolve, publish):
        assert child.parent is not None
        assert f"{child.parent.span_id:016x}" == message_span
    (event,) = drain(sqs, resources.tap_queue_url)
    traceparent = event["MessageAttributes"]["traceparent"]["StringValue"]
    version, trace_id, parent, flags = traceparent.split("-")
    assert (version, trace_id, parent) == ("00", root_trace, hex_ids(publish)[1])
    assert int(flags, 16) & 1  # sampled


@pytest.mark.parametrize("resources", [Sink.EVENTBRIDGE], indirect=True)
async def test_sqs_aws_trace_header_is_continued_and_dead_letters_are_traced(
    sqs: SQSClient, resources: Resources, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    sqs.send_message(
        QueueUrl=resources.queue_url,
        MessageBody=f"invalid-{tag()}",
        MessageSystemAttributes={
            "AWSTraceHeader": {
                "DataType": "String",
                "StringValue": f"Root={XRAY_ROOT};Parent={XRAY_PARENT};Sampled=1",
            }
        },
    )
    await run(resources)

    spans = span_exporter.get_finished_spans()
    (message,) = named(spans, "regworker.message")
    assert hex_ids(message)[0] == XRAY_ROOT.replace("1-", "", 1).replace("-", "")
    assert message.parent is not None
    assert f"{message.parent.span_id:016x}" == XRAY_PARENT
    (letter,) = named(spans, "dead_letter")
    assert letter.parent is not None
    assert f"{letter.parent.span_id:016x}" == hex_ids(message)[1]
    assert len(drain(sqs, resources.dlq_url)) == 1


async def test_an_eventbridge_entry_carries_the_span_as_an_xray_trace_header(
    span_exporter: InMemorySpanExporter,
) -> None:
    publisher = EventBridgePublisher(client=Any, bus_name="bus", source="regworker")  # type: ignore[arg-type]
    with trace.get_tracer("test").start_as_current_span("publish") as span:
        entry = publisher._entry(Outgoing.of({"event_id": "e"}))
    context = span.get_span_context()
    trace_id = f"{context.trace_id:032x}"
    assert entry["TraceHeader"] == (
        f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={context.span_id:016x};Sampled=1"
    )
    await publisher.close()


NO_PROVIDER_RUN = """
from opentelemetry.trace import SpanKind
from worker.aws.sqs_wire import ReceivedMessage
from worker.core.tracing import child_span, current_headers, message_span

def message(attributes):
    return ReceivedMessage("m", "r", "b", 1, None, attributes)

traced = message({"traceparent": {"DataType": "String", "StringValue": %r}})
with message_span(traced), child_span("publish", SpanKind.PRODUCER):
    print(current_headers().traceparent)
with message_span(message({})) as span, child_span("publish", SpanKind.PRODUCER):
    print(current_headers().traceparent, span.get_span_context().is_valid)
"""


def test_without_a_tracer_provider_the_received_trace_still_goes_on_with_the_event() -> None:
    """No SDK (the default install): nothing is recorded, but a web tier that traces gets
    its trace carried on to the event, as the API's no-op tracer does. A process of its
    own: this session's ``span_exporter`` fixture sets a provider once for all."""
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    finished = subprocess.run(
        [sys.executable, "-c", NO_PROVIDER_RUN % traceparent],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines() == [traceparent, "None False"]

"""Traces (OpenTelemetry): the enqueue helpers start a trace, the worker continues it
with one span per message and child spans for resolve, publish and DLQ send, and the
event carries it on to the subscribers.

- In: the message attribute ``traceparent`` (W3C, written by the enqueue helpers), else
  SQS's own ``AWSTraceHeader`` (X-Ray, set when the sender was traced by X-Ray).
- Out: an SNS message attribute ``traceparent``; EventBridge's ``TraceHeader`` (X-Ray
  format, the only one PutEvents takes), converted by the X-Ray propagator.

Only ``opentelemetry-api`` is a dependency: without an SDK's tracer provider nothing is
recorded, and a received trace context is carried on to the event (the API's no-op
tracer hands back the parent's context); a message without one gets no span at all.
The ``otel`` extra adds the SDK and the OTLP exporter; ``regworker run`` sets them up
from the standard ``OTEL_*`` variables (``configure_tracing``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Final

from opentelemetry import context, trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from worker.aws.sqs_wire import ReceivedMessage
from worker.core.events import TRACEPARENT

XRAY_HEADER: Final = "X-Amzn-Trace-Id"  # the X-Ray propagator's carrier key
AWS_TRACE_HEADER: Final = "AWSTraceHeader"  # SQS's system attribute

W3C: Final = TraceContextTextMapPropagator()
XRAY: Final = AwsXRayPropagator()
tracer = trace.get_tracer("regworker")


@dataclass(frozen=True)
class TraceHeaders:
    """The current span's context, in both formats the sinks take; empty outside a
    recorded span (no SDK: nothing to carry)."""

    traceparent: str | None = None
    xray: str | None = None


def current_headers() -> TraceHeaders:
    if not trace.get_current_span().get_span_context().is_valid:
        return TraceHeaders()
    w3c: dict[str, str] = {}
    W3C.inject(w3c)
    xray: dict[str, str] = {}
    XRAY.inject(xray)
    return TraceHeaders(w3c.get(TRACEPARENT), xray.get(XRAY_HEADER))


def tracing_on() -> bool:
    """A tracer provider is set: ``configure_tracing``'s, or one the host process set up."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def message_span(message: ReceivedMessage) -> AbstractContextManager[Span]:
    """The span of one message's handling, continuing the trace it carries. Without a
    tracer provider the API's no-op tracer still carries that trace on (its span is the
    parent's context: the event goes out with the message's ``traceparent``); a message
    that carries none gets no span at all. The no-op span still switches the context in
    and out, about 13 us a span, three a message: a tenth of the worker's own work on it
    (bench/own_cost.py)."""
    parent = parent_context(message)
    if not tracing_on() and trace.get_current_span(parent) is INVALID_SPAN:
        return nullcontext(INVALID_SPAN)
    return tracer.start_as_current_span(
        "regworker.message",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "aws_sqs", "messaging.message.id": message.message_id},
    )


def child_span(name: str, kind: SpanKind) -> AbstractContextManager[Span]:
    """A child of the current span for the block; none outside a message's span."""
    if trace.get_current_span() is INVALID_SPAN:
        return nullcontext(INVALID_SPAN)
    return tracer.start_as_current_span(name, kind=kind)


def parent_context(message: ReceivedMessage) -> context.Context:
    """The context a received message continues: its ``traceparent`` attribute, else
    SQS's ``AWSTraceHeader``, else a new trace."""
    attribute = message.attributes.get(TRACEPARENT)
    traceparent = attribute.get("StringValue") if attribute else None
    if traceparent:
        found = W3C.extract({TRACEPARENT: traceparent})
        if trace.get_current_span(found).get_span_context().is_valid:
            return found
    if message.trace_header:
        return XRAY.extract({XRAY_HEADER: message.trace_header})
    return context.Context()

"""Publish CustomerRegistered events to EventBridge or SNS, ten to a call.

Each entry of a batch answer is checked: one failed entry fails only its own event,
which leaves only that message to come back from the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from worker.core.batcher import Batcher
from worker.core.errors import PublishError
from worker.core.events import EVENT_TYPE, encode, sns_message_attributes
from worker.core.tracing import TraceHeaders, current_headers

if TYPE_CHECKING:
    from types_aiobotocore_events.client import EventBridgeClient
    from types_aiobotocore_events.type_defs import PutEventsRequestEntryTypeDef
    from types_aiobotocore_sns.client import SNSClient
    from types_aiobotocore_sns.type_defs import (
        PublishBatchRequestEntryTypeDef,
    )

Event = dict[str, Any]
# Batch APIs take 256 KiB a call; entries carry some bytes beyond the event's JSON.
ENTRY_OVERHEAD = 300
# PutEvents entry codes that refuse the entry itself; the others (throttling, internal
# failure, access or KMS trouble) are the bus's or the worker's, and are waited out.
PUT_EVENTS_ENTRY_REFUSALS = frozenset(
    {"InvalidArgument", "MalformedDetail", "ValidationException", "InvalidParameter"}
)


@dataclass(frozen=True)
class Outgoing:
    """An event and its JSON, encoded once for both the size check and the call."""

    event: Event
    body: str
    trace: TraceHeaders  # the publishing message's span, taken in its own task

    @classmethod
    def of(cls, event: Event) -> Outgoing:
        return cls(event, encode(event), current_headers())

    @property
    def size(self) -> int:
        return len(self.body) + ENTRY_OVERHEAD


class Publisher(Protocol):
    async def publish(self, event: Event) -> None: ...

    async def close(self) -> None: ...


class EventBridgePublisher:
    def __init__(
        self, client: EventBridgeClient, bus_name: str, source: str, *, linger: float = 0.05
    ) -> None:
        self._client = client
        self._bus = bus_name
        self._source = source
        self._batcher: Batcher[Outgoing, None] = Batcher(
            "put-events", self._send, linger=linger, size_of=lambda o: o.size
        )

    async def publish(self, event: Event) -> None:
        await self._batcher.submit(Outgoing.of(event))

    async def close(self) -> None:
        await self._batcher.close()

    async def _send(self, events: Sequence[Outgoing]) -> list[BaseException | None]:
        entries = [self._entry(outgoing) for outgoing in events]
        answer = await self._client.put_events(Entries=entries)
        results = answer.get("Entries", [])
        outcomes: list[BaseException | None] = []
        for index in range(len(events)):
            result = results[index] if index < len(results) else {}
            if result.get("EventId"):
                outcomes.append(None)
            else:
                code = result.get("ErrorCode", "NoEventId")
                outcomes.append(
                    PublishError(
                        f"PutEvents {code}: {result.get('ErrorMessage', '')}",
                        sender_fault=code in PUT_EVENTS_ENTRY_REFUSALS,
                    )
                )
        return outcomes

    def _entry(self, outgoing: Outgoing) -> PutEventsRequestEntryTypeDef:
        entry: PutEventsRequestEntryTypeDef = {
            "Source": self._source,
            "DetailType": EVENT_TYPE,
            "Detail": outgoing.body,
            "EventBusName": self._bus,
        }
        if outgoing.trace.xray:
            entry["TraceHeader"] = outgoing.trace.xray
        return entry


class SnsPublisher:
    def __init__(self, client: SNSClient, topic_arn: str, *, linger: float = 0.05) -> None:
        self._client = client
        self._topic = topic_arn
        self._fifo = topic_arn.endswith(".fifo")
        self._batcher: Batcher[Outgoing, None] = Batcher(
            "publish-batch", self._send, linger=linger, size_of=lambda o: o.size
        )

    async def publish(self, event: Event) -> None:
        await self._batcher.submit(Outgoing.of(event))

    async def close(self) -> None:
        await self._batcher.close()

    def _entry(self, index: int, outgoing: Outgoing) -> PublishBatchRequestEntryTypeDef:
        event = outgoing.event
        entry: PublishBatchRequestEntryTypeDef = {
            "Id": str(index),
            "Message": outgoing.body,
            "MessageAttributes": sns_message_attributes(event, outgoing.trace.traceparent),
        }
        if self._fifo:
            # One group per customer keeps each customer's events in order; SNS drops a
            # second publish of the same event_id within its 5-minute window.
            entry["MessageGroupId"] = customer_key(event)
            entry["MessageDeduplicationId"] = event["event_id"]
        return entry

    async def _send(self, events: Sequence[Outgoing]) -> list[BaseException | None]:
        answer = await self._client.publish_batch(
            TopicArn=self._topic,
            PublishBatchRequestEntries=[self._entry(i, e) for i, e in enumerate(events)],
        )
        outcomes: list[BaseException | None] = [
            PublishError("PublishBatch: no answer for this entry")
        ] * len(events)
        for ok in answer.get("Successful", []):
            outcomes[int(ok["Id"])] = None
        for failed in answer.get("Failed", []):
            outcomes[int(failed["Id"])] = PublishError(
                f"PublishBatch {failed.get('Code', '')}: {failed.get('Message', '')}",
                sender_fault=bool(failed.get("SenderFault")),
            )
        return outcomes


def customer_key(event: Event) -> str:
    key = event.get("customer_identifier") or event.get("customer_aws_account_id")
    return str(key or event["token_sha256"][:32])

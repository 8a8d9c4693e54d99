"""One CustomerRegistered per token, even when SQS or the web tier delivers it twice.

A record per ``event_id`` in DynamoDB, written with conditions (as the AWS Powertools
idempotency utility does):

- ``claim`` puts ``IN_PROGRESS`` with a lease that ends with the message's visibility
  timeout, only if there is no record, or the previous claim's lease has run out (its
  worker died);
- ``complete`` marks it ``COMPLETE`` right after the publish succeeded;
- ``release`` deletes an ``IN_PROGRESS`` claim when the message was not published
  (dead-lettered, requeued), so a later delivery or a replay may try again.

Records expire (DynamoDB TTL on ``expires_at``) after ``REGWORKER_IDEMPOTENCY_TTL_SECONDS``,
longer than a token's life. The one gap: a worker that dies between publishing and
``complete`` leaves a claim whose lease runs out, and the next delivery publishes again
with the same ``event_id`` (subscribers deduplicate on it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from worker.faults import error_code

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

IN_PROGRESS: Final = "IN_PROGRESS"
COMPLETE: Final = "COMPLETE"


class Claim(StrEnum):
    CLAIMED = "claimed"  # this worker goes ahead
    DONE = "done"  # already published: drop the duplicate
    BUSY = "busy"  # another worker holds a live claim: try again when its lease ends


@dataclass(frozen=True)
class ClaimResult:
    status: Claim
    lease_left: float = 0.0  # BUSY: seconds until the other worker's lease runs out


class IdempotencyStore:
    def __init__(self, client: DynamoDBClient, table: str, *, ttl_seconds: int) -> None:
        self._client = client
        self._table = table
        self._ttl = ttl_seconds

    async def claim(self, event_id: str, lease_seconds: float) -> ClaimResult:
        now = time.time()
        try:
            await self._client.put_item(
                TableName=self._table,
                Item={
                    "event_id": {"S": event_id},
                    "status": {"S": IN_PROGRESS},
                    "lease_until": {"N": f"{now + lease_seconds:.3f}"},
                    "expires_at": {"N": str(int(now + self._ttl))},
                },
                ConditionExpression="attribute_not_exists(event_id)"
                " OR (#status = :in_progress AND lease_until < :now)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":in_progress": {"S": IN_PROGRESS},
                    ":now": {"N": f"{now:.3f}"},
                },
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
            return await self._current(event_id, now)
        return ClaimResult(Claim.CLAIMED)

    async def _current(self, event_id: str, now: float) -> ClaimResult:
        answer = await self._client.get_item(
            TableName=self._table, Key={"event_id": {"S": event_id}}, ConsistentRead=True
        )
        item = answer.get("Item", {})
        if item.get("status", {}).get("S") == COMPLETE:
            return ClaimResult(Claim.DONE)
        lease_until = float(item.get("lease_until", {}).get("N", "0"))
        return ClaimResult(Claim.BUSY, max(0.0, lease_until - now))

    async def complete(self, event_id: str) -> None:
        await self._client.update_item(
            TableName=self._table,
            Key={"event_id": {"S": event_id}},
            UpdateExpression="SET #status = :complete REMOVE lease_until",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":complete": {"S": COMPLETE}},
        )

    async def release(self, event_id: str) -> None:
        try:
            await self._client.delete_item(
                TableName=self._table,
                Key={"event_id": {"S": event_id}},
                ConditionExpression="#status = :in_progress",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":in_progress": {"S": IN_PROGRESS}},
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise

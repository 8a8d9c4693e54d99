"""One CustomerRegistered per token, even when SQS or the web tier delivers it twice.

A record per ``event_id`` in DynamoDB, written with conditions (as the AWS Powertools
idempotency utility does):

- ``claim`` puts ``IN_PROGRESS`` with an ``owner`` (a random id for this claim) and a
  lease, only if there is no record, or the previous claim's lease has run out (its
  worker died);
- the lease is renewed while the message is in hand (``run``), so a slow publish or a
  long fault hold never lets a second worker in;
- ``complete`` marks it ``COMPLETE`` right after the publish succeeded, and ``release``
  deletes an ``IN_PROGRESS`` claim when the message was not published (dead-lettered,
  requeued), so a later delivery or a replay may try again. Both only touch the
  record while this claim still owns it.

Leases are wall-clock times written by one host and read by another, so a lease counts
as run out only ``CLOCK_SKEW_SECONDS`` after its end: hosts kept by NTP (the Amazon Time
Sync Service) are within milliseconds of each other; the allowance covers a host drifting
by seconds. It is also how long, beyond its lease, a dead worker's claim holds the token
back from the others, so it is kept short: a host off by more is a host to fix.

Records expire (DynamoDB TTL on ``expires_at``) after ``REGWORKER_IDEMPOTENCY_TTL_SECONDS``,
longer than a token's life. The one gap: a worker that dies between publishing and
``complete`` leaves a claim whose lease runs out, and the next delivery publishes again
with the same ``event_id`` (subscribers deduplicate on it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

import structlog
from botocore.exceptions import ClientError

from worker.core.faults import describe, error_code

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

log = structlog.get_logger(__name__)

IN_PROGRESS: Final = "IN_PROGRESS"
COMPLETE: Final = "COMPLETE"
CLOCK_SKEW_SECONDS: Final = 5.0
CONDITION_FAILED: Final = "ConditionalCheckFailedException"


class Claim(StrEnum):
    CLAIMED = "claimed"  # this worker goes ahead
    DONE = "done"  # already published: drop the duplicate
    BUSY = "busy"  # another worker holds a live claim: try again when its lease ends


@dataclass(frozen=True)
class ClaimResult:
    status: Claim
    lease_left: float = 0.0  # BUSY: seconds until the other worker's lease runs out
    owner: str = ""  # CLAIMED: this claim's id, for renew, complete and release


@dataclass
class Lease:
    owner: str
    seconds: float
    until: float  # time.monotonic() when it would run out without renewal


class IdempotencyStore:
    def __init__(self, client: DynamoDBClient, table: str, *, ttl_seconds: int) -> None:
        self._client = client
        self._table = table
        self._ttl = ttl_seconds
        self._leases: dict[str, Lease] = {}
        self.renewals = 0

    async def claim(
        self, event_id: str, lease_seconds: float, owner: str | None = None
    ) -> ClaimResult:
        """Claim ``event_id`` for ``owner`` (one id for every try of one message: a try
        whose answer was lost left the claim written, and the next try finds it its own)."""
        now = time.time()
        owner = owner or uuid.uuid4().hex
        try:
            await self._client.put_item(
                TableName=self._table,
                Item={
                    "event_id": {"S": event_id},
                    "status": {"S": IN_PROGRESS},
                    "owner": {"S": owner},
                    "lease_until": {"N": f"{now + lease_seconds:.3f}"},
                    "expires_at": {"N": str(int(now + self._ttl))},
                },
                ConditionExpression="attribute_not_exists(event_id)"
                " OR (#status = :in_progress AND (lease_until < :expired OR #owner = :owner))",
                ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
                ExpressionAttributeValues={
                    ":in_progress": {"S": IN_PROGRESS},
                    ":expired": {"N": f"{now - CLOCK_SKEW_SECONDS:.3f}"},
                    ":owner": {"S": owner},
                },
            )
        except ClientError as error:
            if error_code(error) != CONDITION_FAILED:
                raise
            return await self._current(event_id, now)
        self._leases[event_id] = Lease(owner, lease_seconds, time.monotonic() + lease_seconds)
        return ClaimResult(Claim.CLAIMED, owner=owner)

    async def _current(self, event_id: str, now: float) -> ClaimResult:
        answer = await self._client.get_item(
            TableName=self._table, Key={"event_id": {"S": event_id}}, ConsistentRead=True
        )
        item = answer.get("Item", {})
        if item.get("status", {}).get("S") == COMPLETE:
            return ClaimResult(Claim.DONE)
        lease_until = float(item.get("lease_until", {}).get("N", "0"))
        return ClaimResult(Claim.BUSY, max(0.0, lease_until + CLOCK_SKEW_SECONDS - now))

    async def complete(self, event_id: str, owner: str) -> None:
        """Mark the token published; a claim taken over by another worker (this one's
        lease ran out) is left to that worker, and the published event stands."""
        self._forget(event_id, owner)
        try:
            await self._client.update_item(
                TableName=self._table,
                Key={"event_id": {"S": event_id}},
                UpdateExpression="SET #status = :complete REMOVE lease_until",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
                ExpressionAttributeValues={":complete": {"S": COMPLETE}, ":owner": {"S": owner}},
            )
        except ClientError as error:
            if error_code(error) != CONDITION_FAILED:
                raise
            log.warning("idempotency_claim_lost", event_id=event_id, step="complete")

    async def release(self, event_id: str, owner: str) -> None:
        self._forget(event_id, owner)
        try:
            await self._client.delete_item(
                TableName=self._table,
                Key={"event_id": {"S": event_id}},
                ConditionExpression="#status = :in_progress AND #owner = :owner",
                ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
                ExpressionAttributeValues={
                    ":in_progress": {"S": IN_PROGRESS},
                    ":owner": {"S": owner},
                },
            )
        except ClientError as error:
            if error_code(error) != CONDITION_FAILED:
                raise

    def _forget(self, event_id: str, owner: str) -> None:
        """Stop renewing this claim's lease (and only this claim's)."""
        lease = self._leases.get(event_id)
        if lease is not None and lease.owner == owner:
            del self._leases[event_id]

    async def run(self, interval: float) -> None:
        """Renew, every ``interval`` seconds, the leases past half their length."""
        while True:
            await asyncio.sleep(interval)
            await self.renew_due()

    async def renew_due(self) -> None:
        now = time.monotonic()
        due = [
            (e, lease) for e, lease in self._leases.items() if lease.until - now < lease.seconds / 2
        ]
        await asyncio.gather(*(self._renew(event_id, lease) for event_id, lease in due))

    async def _renew(self, event_id: str, lease: Lease) -> None:
        started = time.monotonic()
        try:
            await self._client.update_item(
                TableName=self._table,
                Key={"event_id": {"S": event_id}},
                UpdateExpression="SET lease_until = :until",
                ConditionExpression="#owner = :owner AND #status = :in_progress",
                ExpressionAttributeNames={"#owner": "owner", "#status": "status"},
                ExpressionAttributeValues={
                    ":until": {"N": f"{time.time() + lease.seconds:.3f}"},
                    ":owner": {"S": lease.owner},
                    ":in_progress": {"S": IN_PROGRESS},
                },
            )
        except ClientError as error:
            if error_code(error) != CONDITION_FAILED:
                log.warning("idempotency_renew_failed", event_id=event_id, error=describe(error))
                return  # the next beat tries again while the lease lasts
            if self._leases.get(event_id) is lease:  # not completed meanwhile: really lost
                log.warning("idempotency_claim_lost", event_id=event_id, step="renew")
                del self._leases[event_id]
            return
        except Exception as error:
            log.warning("idempotency_renew_failed", event_id=event_id, error=describe(error))
            return
        if self._leases.get(event_id) is lease:
            lease.until = started + lease.seconds
            self.renewals += 1

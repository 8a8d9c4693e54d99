"""The idempotency claims on a real DynamoDB (moto server): a claim has an owner, only
its owner completes or releases it, its lease is renewed while the message is in hand,
and a lease counts as run out only a clock-skew allowance after its end."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import boto3
import pytest
from aiobotocore.session import get_session
from types_aiobotocore_dynamodb.client import DynamoDBClient

from tests.support import REGION
from worker.core.idempotency import CLOCK_SKEW_SECONDS, Claim, IdempotencyStore


@pytest.fixture
async def store(session: boto3.Session) -> AsyncIterator[IdempotencyStore]:
    table = f"claims-{uuid.uuid4().hex[:8]}"
    session.client("dynamodb").create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "event_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "event_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    async with get_session().create_client("dynamodb", region_name=REGION) as client:
        yield IdempotencyStore(client, table, ttl_seconds=3600)


def client_of(store: IdempotencyStore) -> DynamoDBClient:
    return store._client


async def record(store: IdempotencyStore, event_id: str) -> dict[str, str]:
    answer = await client_of(store).get_item(
        TableName=store._table,
        Key={"event_id": {"S": event_id}},
        ConsistentRead=True,
    )
    item = answer.get("Item", {})
    return {key: next(iter(value.values())) for key, value in item.items()}  # type: ignore[misc]


async def test_only_the_owner_releases_its_claim(store: IdempotencyStore) -> None:
    """A worker whose lease ran out must not delete the claim another worker now holds."""
    first = await store.claim("e1", lease_seconds=30)
    assert first.status is Claim.CLAIMED
    await store.release("e1", owner="someone-else")
    assert (await record(store, "e1"))["owner"] == first.owner  # still there
    await store.release("e1", owner=first.owner)
    assert await record(store, "e1") == {}


async def test_a_lost_claim_is_not_completed_over_its_new_owner(store: IdempotencyStore) -> None:
    first = await store.claim("e2", lease_seconds=30)
    await store.complete("e2", owner="a-stale-owner")  # logged, not raised: it published
    assert (await record(store, "e2"))["status"] == "IN_PROGRESS"
    await store.complete("e2", owner=first.owner)
    assert (await record(store, "e2"))["status"] == "COMPLETE"


async def test_a_lease_is_renewed_while_the_message_is_in_hand(store: IdempotencyStore) -> None:
    claim = await store.claim("e3", lease_seconds=2)
    written = float((await record(store, "e3"))["lease_until"])
    await asyncio.sleep(1.1)  # past half the lease
    await store.renew_due()
    renewed = float((await record(store, "e3"))["lease_until"])
    assert renewed >= written + 1.0
    assert store.renewals == 1
    await store.complete("e3", owner=claim.owner)
    await store.renew_due()  # a completed claim is no longer renewed
    assert store.renewals == 1


async def test_a_lease_just_past_its_end_is_still_busy_for_the_clock_skew(
    store: IdempotencyStore,
) -> None:
    """The lease was written by another host's clock: it counts as run out only
    CLOCK_SKEW_SECONDS after its end, so a host a little ahead cannot take a live claim."""
    table = store._table
    await client_of(store).put_item(
        TableName=table,
        Item={
            "event_id": {"S": "e4"},
            "status": {"S": "IN_PROGRESS"},
            "owner": {"S": "other"},
            "lease_until": {"N": f"{time.time() - CLOCK_SKEW_SECONDS / 2:.3f}"},
        },
    )
    busy = await store.claim("e4", lease_seconds=30)
    assert busy.status is Claim.BUSY
    assert 0 < busy.lease_left <= CLOCK_SKEW_SECONDS / 2 + 1
    await client_of(store).update_item(
        TableName=table,
        Key={"event_id": {"S": "e4"}},
        UpdateExpression="SET lease_until = :t",
        ExpressionAttributeValues={":t": {"N": f"{time.time() - CLOCK_SKEW_SECONDS - 1:.3f}"}},
    )
    taken = await store.claim("e4", lease_seconds=30)
    assert taken.status is Claim.CLAIMED
    assert (await record(store, "e4"))["owner"] == taken.owner


async def test_completing_an_old_claim_keeps_renewing_the_new_one(
    store: IdempotencyStore,
) -> None:
    """This worker's lease ran out and another claim took the token; when the old
    holder completes (its publish went through), the new claim's lease is still renewed."""
    old = await store.claim("e5", lease_seconds=2)
    # The lease is judged run out once past its end and the clock-skew allowance.
    await client_of(store).update_item(
        TableName=store._table,
        Key={"event_id": {"S": "e5"}},
        UpdateExpression="SET lease_until = :t",
        ExpressionAttributeValues={":t": {"N": f"{time.time() - CLOCK_SKEW_SECONDS - 1:.3f}"}},
    )
    new = await store.claim("e5", lease_seconds=2)
    assert new.status is Claim.CLAIMED
    await store.complete("e5", owner=old.owner)  # refused: not the owner any more
    await asyncio.sleep(1.1)
    await store.renew_due()
    assert store.renewals == 1  # the new claim's lease


async def test_a_claim_whose_answer_was_lost_is_found_to_be_ones_own(
    store: IdempotencyStore,
) -> None:
    """The claim was written but its reply was cut off (an outage): the message's next
    try, with the same owner id, takes it; another message's try finds it busy."""
    first = await store.claim("e6", lease_seconds=30, owner="message-1")
    assert first.status is Claim.CLAIMED
    again = await store.claim("e6", lease_seconds=30, owner="message-1")
    assert again.status is Claim.CLAIMED
    other = await store.claim("e6", lease_seconds=30, owner="message-2")
    assert other.status is Claim.BUSY


async def test_a_completed_claim_drops_every_later_delivery(store: IdempotencyStore) -> None:
    """The record a publish leaves: COMPLETE, kept for the TTL, and every later claim of
    the token (a redelivery, a second worker) is told it is done."""
    claimed = await store.claim("e-done", lease_seconds=30)
    await store.complete("e-done", owner=claimed.owner)
    done = await record(store, "e-done")
    assert done["status"] == "COMPLETE"
    assert "lease_until" not in done
    assert int(done["expires_at"]) > time.time() + 3600 - 60  # the fixture's TTL: one hour
    for owner in (None, claimed.owner):
        assert (await store.claim("e-done", 30, owner)).status is Claim.DONE

"""The handler's outcome matrix in-process: every way a message can end (published,
dead-lettered for each reason, kept, requeued, dropped as a duplicate, held through a
fault), driven through fakes of the worker's own interfaces (tests/core/fakes.py). The
receive loop's own cases (shutdown, FIFO lanes, the in-flight bound) are in
test_consumer.py.

Moved here from the end-to-end tests, with their assertions:

- test_worker.py::test_events_never_carry_the_token -> test_every_outcome_in_one_run
  (each published event, encoded); the real sinks' raw bodies are checked for tokens in
  the kept end-to-end run (tests.support.every_outcome).
- test_worker.py::test_same_token_twice_gives_the_same_event_id ->
  test_same_token_twice_gives_the_same_event_id
- test_worker.py::test_a_sink_gone_after_start_keeps_the_message ->
  test_a_sink_gone_after_start_keeps_the_message_unspent
- test_worker.py::test_rejected_credentials_never_blame_the_token ->
  test_rejected_credentials_never_blame_the_token
- test_resilience.py::test_idempotency_table_gives_one_event_per_token ->
  test_the_idempotency_table_gives_one_event_per_token, and the table's own record
  (COMPLETE, expires_at) -> test_idempotency.py::test_a_completed_claim_drops_every_later_delivery
- test_resilience.py::test_a_dlq_gone_after_start_holds_the_poison_message_until_it_is_back
  -> test_a_dlq_gone_holds_the_poison_message_until_it_is_back
- test_hostile_e2e.py::test_hostile_bodies_land_in_the_dlq_with_reasons: every body ->
  test_hostile_bodies_are_dead_lettered_with_their_reasons; the end-to-end test keeps the
  bodies that test the wire (SQS's size cap, non-ASCII text, tokens sent to the emulator).
- test_resilience.py::test_sink_outage_keeps_messages_until_it_is_back stays end to end
  (a real socket cut); its outcome is also here:
  test_a_sink_outage_keeps_messages_in_hand_until_it_is_back.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

import pytest
import structlog
from botocore.exceptions import ClientError, EndpointConnectionError
from structlog.testing import capture_logs

from tests.core.fakes import (
    LONGEST_POLL_SECONDS,
    PRODUCT,
    FakeClaimStore,
    FakePublisher,
    FakeQueue,
)
from tests.core.rig import Rig, eventually, fake_settings, held, when_held
from tests.support import (
    HOSTILE,
    body_shapes,
    events_by_token,
    original_body,
    schema_validator,
    tag,
)
from worker.aws.sqs_wire import BatchEntryError
from worker.core.errors import (
    ApiDisabled,
    ConfigurationFault,
    DeadLetterReason,
    PublishError,
    Rejected,
    TokenRefused,
    TransientError,
)
from worker.core.events import event_id_for, token_sha256
from worker.core.fault_hold import FRESH_EVIDENCE_SECONDS
from worker.core.handler import DISABLED_API_TRIES
from worker.core.idempotency import CLOCK_SKEW_SECONDS
from worker.core.probes import Component
from worker.core.resolver import ResolveThrottled
from worker.core.tally import Outcome

pytestmark = pytest.mark.usefixtures("quick_probes")

SERVER_ERROR = "InternalServiceErrorException: every try failed"
BAD_CREDENTIALS = "UnrecognizedClientException: The security token included is invalid."


def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} here"}}, operation)


def no_connection() -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


async def test_every_outcome_in_one_run() -> None:
    settings = fake_settings(allowed_product_codes=frozenset({PRODUCT}), requeue_max_seconds=0)
    rig = Rig.build(settings)
    t = tag()
    good = {
        **body_shapes(t),
        f"throttled-{t}": f"throttled-{t}",  # throttled past its budget once, then resolved
        f"error-{t}": f"error-{t}",  # 5xx past its budget once, then resolved
    }
    rig.resolver.knows(*good)
    rig.resolver.fails(f"throttled-{t}", ResolveThrottled("ThrottlingException: Rate exceeded"))
    rig.resolver.fails(f"error-{t}", TransientError(SERVER_ERROR))
    bad = {
        "not a token": "MalformedMessage",
        '{"offer_type": "free-trial"}': "MalformedMessage",
        f"invalid-{t}": "InvalidToken",  # never issued: the resolver does not know it
        f"expired-{t}": "ExpiredToken",
        f"disabled-{t}": "DisabledApi",  # refused for this token while the probe passes
        f"product-othercode-{t}": "ProductNotAllowed",
        f"error-forever-{t}": "RetriesExhausted",  # fails on every delivery
    }
    expired = Rejected(DeadLetterReason.EXPIRED_TOKEN, "ExpiredTokenException: too old")
    rig.resolver.fails(f"expired-{t}", then=expired)
    rig.resolver.fails(f"disabled-{t}", then=ApiDisabled("DisabledApiException: for this one"))
    rig.resolver.knows(f"product-othercode-{t}", product_code="othercode")
    rig.resolver.fails(f"error-forever-{t}", then=TransientError(SERVER_ERROR))
    rig.queue.send_all([*good.values(), *bad])

    tally = await rig.run(until_empty=True)

    # Requeued: each of the two once, the exhausted one on all but its last delivery.
    requeued = 2 + settings.max_receives - 1
    assert tally.outcomes == {
        "published": len(good),
        "dead_lettered": len(bad),
        "requeued": requeued,
    }
    assert dict(tally.dead_letters) == dict.fromkeys(bad.values(), 1) | {"MalformedMessage": 2}
    assert rig.resolver.calls.count(f"disabled-{t}") == DISABLED_API_TRIES

    events = events_by_token(rig.publisher.events, good, PRODUCT)
    for token in good:
        event = events[token_sha256(token)]
        assert event["customer_aws_account_id"]
        assert event["license_arn"].startswith("arn:aws:license-manager::")
    assert events[token_sha256(f"tok+form/{t}=")]["offer_type"] == "free-trial"
    json_event = events[token_sha256(f"tok-json-{t}")]
    assert json_event["correlation_id"] == f"corr-{t}"
    assert json_event["metadata"] == {"plan": "gold"}

    documents = rig.dead_letters.documents()
    for document in documents:
        schema_validator("dead-letter").validate(document)
    letters = {document["body"]: document["attributes"] for document in documents}
    assert {body: a["dlq_reason"] for body, a in letters.items()} == bad
    exhausted = letters[f"error-forever-{t}"]
    assert exhausted["dlq_receive_count"] == str(settings.max_receives)
    assert "InternalServiceErrorException" in exhausted["dlq_error"]
    assert "dlq_token_sha256" not in letters["not a token"]
    assert letters[f"invalid-{t}"]["dlq_token_sha256"] == token_sha256(f"invalid-{t}")
    assert rig.queue.left() == []


async def test_same_token_twice_gives_the_same_event_id() -> None:
    rig = Rig.build()
    token = f"dup-{tag()}"
    rig.resolver.knows(token)
    rig.queue.send_all([token, f"x-amzn-marketplace-token={token}"])
    assert [await rig.handle_next(), await rig.handle_next()] == [Outcome.PUBLISHED] * 2
    assert rig.publisher.event_ids() == [event_id_for(token)] * 2


async def test_a_resolve_past_its_budget_is_requeued_later_each_time_then_exhausted() -> None:
    rig = Rig.build(fake_settings(requeue_base_seconds=1, requeue_max_seconds=900))
    token = f"error-{tag()}"
    rig.resolver.fails(token, then=TransientError(SERVER_ERROR))
    rig.queue.send(token)
    assert await rig.handle_next() is Outcome.REQUEUED
    rig.queue.time_passes()
    assert await rig.handle_next() is Outcome.REQUEUED
    assert rig.queue.visibility_changes == [(token, 1), (token, 2)]
    assert rig.resolver.trouble.probes == 2  # the probe passed: the failure is the token's
    rig.queue.time_passes()
    assert await rig.handle_next() is Outcome.DEAD_LETTERED
    [letter] = rig.dead_letters.letters
    assert letter.reason is DeadLetterReason.RETRIES_EXHAUSTED
    assert letter.error == f"still failing after 3 deliveries: {SERVER_ERROR}"
    assert rig.queue.left() == []


async def test_a_token_refused_while_another_resolves_spends_no_probe() -> None:
    """DisabledApi for one token, and another message's resolve gets through just after:
    that answer shows the API works for others, so no probe call is spent on
    ResolveCustomer (the account's quota). The later tries, with nothing else answered
    after them, are probed."""
    rig = Rig.build()
    refused, good = f"disabled-{tag()}", f"good-{tag()}"
    rig.resolver.fails(refused, then=ApiDisabled("DisabledApiException: for this one"))
    rig.resolver.knows(good)
    rig.queue.send_all([refused, good])
    rig.resolver.delay = 0.1  # both resolves under way together
    first, second = await rig.receive_one(), await rig.receive_one()
    refused_task = asyncio.create_task(rig.handler.handle(first))
    await asyncio.sleep(0.01)
    assert await rig.handler.handle(second) is Outcome.PUBLISHED
    assert await refused_task is Outcome.DEAD_LETTERED
    assert rig.dead_letters.letters[0].reason is DeadLetterReason.DISABLED_API
    assert (rig.hold.probes_spared, rig.resolver.trouble.probes) == (1, DISABLED_API_TRIES - 1)


async def test_a_token_refused_as_invalid_just_after_spares_the_probe_too() -> None:
    """InvalidTokenException is ResolveCustomer answering (the probe's own pass): another
    token refused that way just after a DisabledApi shows the API works for others."""
    rig = Rig.build()
    refused, invalid = f"disabled-{tag()}", f"invalid-{tag()}"
    rig.resolver.fails(refused, then=ApiDisabled("DisabledApiException: for this one"))
    rig.resolver.fails(invalid, then=TokenRefused(DeadLetterReason.INVALID_TOKEN, "no"))
    rig.queue.send_all([refused, invalid])
    rig.resolver.delay = 0.1
    first, second = await rig.receive_one(), await rig.receive_one()
    refused_task = asyncio.create_task(rig.handler.handle(first))
    await asyncio.sleep(0.01)
    assert await rig.handler.handle(second) is Outcome.DEAD_LETTERED
    assert await refused_task is Outcome.DEAD_LETTERED
    assert [letter.reason for letter in rig.dead_letters.letters] == [
        DeadLetterReason.INVALID_TOKEN,
        DeadLetterReason.DISABLED_API,
    ]
    assert (rig.hold.probes_spared, rig.resolver.trouble.probes) == (1, DISABLED_API_TRIES - 1)


async def test_a_token_refused_with_nothing_else_under_way_is_probed_at_once() -> None:
    """No other call in flight: no evidence can come, so the probe is not put off."""
    rig = Rig.build()
    refused = f"disabled-{tag()}"
    rig.resolver.fails(refused, ApiDisabled("DisabledApiException: once"))
    rig.resolver.knows(refused)
    rig.queue.send(refused)
    started = time.monotonic()
    assert await rig.handle_next() is Outcome.PUBLISHED  # refused once, then resolved
    assert rig.resolver.trouble.probes == 1
    assert time.monotonic() - started < 1 + FRESH_EVIDENCE_SECONDS  # the 1 s backoff only


async def test_a_throttle_past_its_budget_is_requeued_without_a_probe() -> None:
    rig = Rig.build()
    token = f"throttled-{tag()}"
    rig.resolver.fails(token, ResolveThrottled("ThrottlingException: Rate exceeded"))
    rig.queue.send(token)
    with capture_logs() as logs:
        assert await rig.handle_next() is Outcome.REQUEUED
    assert rig.resolver.trouble.probes == 0  # slow down is the flow controller's business
    assert held(logs) == []
    assert rig.queue.visibility_changes == [(token, 1)]


async def test_a_resolve_outage_is_held_in_hand_then_published() -> None:
    """Every call fails, the probe too: ResolveCustomer is down for everyone, so the
    message waits in hand (no delivery spent) until it answers again."""
    rig = Rig.build()
    token = f"good-{tag()}"
    rig.resolver.knows(token)
    rig.resolver.trouble.break_with(TransientError(SERVER_ERROR))
    rig.queue.send(token)
    repair = when_held(rig.hold, Component.RESOLVE_CUSTOMER, rig.resolver.trouble.repair)
    with capture_logs() as logs:
        assert await rig.handle_next() is Outcome.PUBLISHED
    await repair
    assert held(logs) == [("outage", "resolve_customer"), ("fault_cleared", "resolve_customer")]
    assert rig.queue.visibility_changes == []
    assert rig.publisher.event_ids() == [event_id_for(token)]


async def test_rejected_credentials_never_blame_the_token() -> None:
    """ResolveCustomer refuses the worker's credentials for a while, with one delivery
    allowed: the good token is held in hand, not dead-lettered nor handed back, and
    published once the credentials work again."""
    rig = Rig.build(fake_settings(max_receives=1))
    token = f"good-{tag()}"
    rig.resolver.knows(token)
    rig.resolver.trouble.break_with(ConfigurationFault(BAD_CREDENTIALS))
    rig.queue.send(token)
    repair = when_held(rig.hold, Component.RESOLVE_CUSTOMER, rig.resolver.trouble.repair)
    with capture_logs() as logs:
        assert await rig.handle_next() is Outcome.PUBLISHED
    await repair
    assert rig.handler.tally.outcomes == {"published": 1}
    assert held(logs) == [
        ("configuration_fault", "resolve_customer"),
        ("fault_cleared", "resolve_customer"),
    ]
    faults = [entry for entry in logs if entry["event"] == "configuration_fault"]
    assert "UnrecognizedClientException" in faults[0]["error"]
    assert rig.dead_letters.letters == []
    assert rig.queue.visibility_changes == []
    assert rig.publisher.event_ids() == [event_id_for(token)]


async def test_a_disabled_api_for_everyone_is_held_not_blamed_on_the_token() -> None:
    rig = Rig.build()
    token = f"good-{tag()}"
    rig.resolver.knows(token)
    rig.resolver.trouble.break_with(ApiDisabled("DisabledApiException: disabled"))
    rig.queue.send(token)
    repair = when_held(rig.hold, Component.RESOLVE_CUSTOMER, rig.resolver.trouble.repair)
    with capture_logs() as logs:
        assert await rig.handle_next() is Outcome.PUBLISHED
    await repair
    assert ("configuration_fault", "resolve_customer") in held(logs)
    assert rig.dead_letters.letters == []


async def test_a_product_outside_the_allowed_codes_is_dead_lettered_and_released() -> None:
    claims = FakeClaimStore()
    rig = Rig.build(fake_settings(allowed_product_codes=frozenset({PRODUCT})), claims=claims)
    token = f"other-{tag()}"
    rig.resolver.knows(token, product_code="othercode")
    rig.queue.send(token)
    assert await rig.handle_next() is Outcome.DEAD_LETTERED
    [letter] = rig.dead_letters.letters
    assert letter.reason is DeadLetterReason.PRODUCT_NOT_ALLOWED
    assert "othercode" in letter.error
    assert letter.token_sha256 == token_sha256(token)
    # The claim is released, not completed: a replay may try the token again.
    assert claims.released == [event_id_for(token)]
    assert claims.records == {}


async def test_a_sink_gone_after_start_keeps_the_message_unspent() -> None:
    """The bus is deleted after start-up: the event cannot be published, so the message
    waits in hand under the fault hold and goes back to the queue, unspent, at stop."""
    rig = Rig.build()
    token = f"keep-{tag()}"
    rig.resolver.knows(token)
    gone = client_error("ResourceNotFoundException", "PutEvents")
    rig.publisher.trouble.break_with(gone)
    rig.queue.send(token)
    stop = asyncio.Event()
    # Stop once the receivers are parked by the hold: their last polls (LONGEST_POLL_SECONDS)
    # are over, so none is in flight to take the handed-back message again.
    stop_soon = partial(asyncio.get_running_loop().call_later, 4 * LONGEST_POLL_SECONDS, stop.set)
    stopping = when_held(rig.hold, Component.SINK, stop_soon)
    with capture_logs() as logs:
        tally = await rig.run(stop)
    await stopping
    assert tally.outcomes == {"kept": 1}  # handed back at stop, never published
    assert ("configuration_fault", "sink") in held(logs)
    assert rig.publisher.events == []
    assert rig.dead_letters.letters == []
    assert [stored.body for stored in rig.queue.left()] == [token]
    assert rig.queue.handed_back() == [token]
    again = await rig.receive_one()
    assert (again.body, again.receive_count) == (token, 2)  # one delivery spent


async def test_a_sink_outage_keeps_messages_in_hand_until_it_is_back() -> None:
    rig = Rig.build()
    tokens = [f"sink-down-{n}-{tag()}" for n in range(5)]
    rig.resolver.knows(*tokens)
    rig.publisher.trouble.break_with(no_connection())
    rig.queue.send_all(tokens)
    repair = when_held(rig.hold, Component.SINK, rig.publisher.trouble.repair)
    with capture_logs() as logs:
        tally = await rig.run(until_empty=True)
    await repair
    assert held(logs) == [("outage", "sink"), ("fault_cleared", "sink")]
    # Kept in hand through the outage: nothing went back to the queue to spend receives.
    assert tally.outcomes == {"published": len(tokens)}
    assert rig.queue.visibility_changes == []
    assert sorted(rig.publisher.event_ids()) == sorted(event_id_for(t) for t in tokens)
    assert rig.dead_letters.letters == []


async def test_an_event_refused_for_itself_is_requeued_and_its_claim_released() -> None:
    claims = FakeClaimStore()
    rig = Rig.build(claims=claims)
    token = f"refused-{tag()}"
    rig.resolver.knows(token)
    too_long = PublishError("PublishBatch InvalidParameter: too long", sender_fault=True)
    rig.publisher.trouble.refuse_next = [too_long]
    rig.queue.send(token)
    with capture_logs() as logs:
        assert await rig.handle_next() is Outcome.REQUEUED
    assert "publish_failed" in [entry["event"] for entry in logs]
    assert held(logs) == []  # the probe passed: the sink works for the others
    assert rig.queue.visibility_changes == [(token, 1)]
    assert claims.released == [event_id_for(token)]
    rig.queue.time_passes()
    assert await rig.handle_next() is Outcome.PUBLISHED
    assert claims.completed == [event_id_for(token)]


async def test_a_dlq_gone_holds_the_poison_message_until_it_is_back() -> None:
    """The DLQ is deleted after start-up: the invalid token waits in hand (not handed
    back, its receive count untouched) and goes to the DLQ once it exists again."""
    rig = Rig.build()
    token = f"invalid-{tag()}"
    gone = client_error("AWS.SimpleQueueService.NonExistentQueue", "SendMessageBatch")
    rig.dead_letters.trouble.break_with(gone)
    rig.queue.send(token)
    repair = when_held(rig.hold, Component.DEAD_LETTER_QUEUE, rig.dead_letters.trouble.repair)
    with capture_logs() as logs:
        assert await rig.handle_next() is Outcome.DEAD_LETTERED
    await repair
    assert held(logs)[0] == ("configuration_fault", "dead_letter_queue")
    assert ("fault_cleared", "dead_letter_queue") in held(logs)
    assert rig.handler.tally.outcomes == {"dead_lettered": 1}
    [document] = rig.dead_letters.documents()
    assert document["body"] == token
    assert document["attributes"]["dlq_receive_count"] == "1"
    assert rig.queue.visibility_changes == []
    assert rig.queue.left() == []


async def test_a_letter_the_dlq_refuses_keeps_the_message_on_the_queue() -> None:
    rig = Rig.build()
    token = f"invalid-{tag()}"
    refused = BatchEntryError("InvalidParameterValue", "refused", sender_fault=True)
    rig.dead_letters.trouble.refuse_next = [refused]
    rig.queue.send(token)
    with capture_logs() as logs:
        assert await rig.handle_next() is Outcome.KEPT
    assert "dead_letter_failed" in [entry["event"] for entry in logs]
    assert rig.dead_letters.letters == []
    assert [stored.body for stored in rig.queue.left()] == [token]  # never lost
    assert rig.queue.visibility_changes == [(token, 1)]


async def test_a_delete_during_a_queue_outage_is_held_then_done() -> None:
    rig = Rig.build()
    token = f"good-{tag()}"
    rig.resolver.knows(token)
    rig.queue.delete_trouble.break_with(no_connection(), calls=1)
    rig.queue.send(token)
    with capture_logs() as logs:
        assert await rig.handle_next() is Outcome.PUBLISHED
    assert held(logs) == [("outage", "source_queue"), ("fault_cleared", "source_queue")]
    assert rig.queue.left() == []
    assert rig.publisher.event_ids() == [event_id_for(token)]


class UnansweredProbePublisher(FakePublisher):
    async def probe(self) -> None:
        await asyncio.Event().wait()


async def test_a_fault_cleared_by_a_messages_call_is_the_dependencys_line() -> None:
    """The sink fails for one message (held); another's publish gets through and clears
    the hold. The clearing is the sink's line, not that message's."""
    rig = Rig.build(publisher=UnansweredProbePublisher())
    first, second = f"a-{tag()}", f"b-{tag()}"
    rig.resolver.knows(first, second)
    rig.publisher.trouble.refuse_next = [client_error("InternalError", "PublishBatch")]
    rig.queue.send(first)
    rig.queue.send(second)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        held_one = asyncio.create_task(rig.handle_next())
        await eventually(lambda: rig.hold.holds_for(Component.SINK))
        assert await rig.handle_next() is Outcome.PUBLISHED
        assert await asyncio.wait_for(held_one, 5) is Outcome.PUBLISHED
    await rig.hold.close()
    [cleared] = [entry for entry in logs if entry["event"] == "fault_cleared"]
    assert "message_id" not in cleared
    assert "token" not in cleared


async def test_hostile_bodies_are_dead_lettered_with_their_reasons() -> None:
    rig = Rig.build()
    good = [f"good-{n}-{tag()}" for n in range(4)]
    rig.resolver.knows(*good)
    hostile = list(HOSTILE)
    rig.queue.send_all([good[0], *hostile[:10], good[1], *hostile[10:], good[2], good[3]])

    tally = await rig.run(until_empty=True)

    assert tally.outcomes == {"published": len(good), "dead_lettered": len(HOSTILE)}
    published = {event["token_sha256"] for event in rig.publisher.events}
    assert published == {token_sha256(token) for token in good}
    validator = schema_validator("dead-letter")
    reasons: dict[str, str] = {}
    for document in rig.dead_letters.documents():
        validator.validate(document)
        attributes = document["attributes"]
        assert attributes["dlq_error"]
        reasons[original_body(attributes, document["body"], hostile)] = attributes["dlq_reason"]
    assert reasons == HOSTILE
    assert rig.queue.left() == []


# ---------------------------------------------------------------- the idempotency table


async def test_the_idempotency_table_gives_one_event_per_token() -> None:
    claims = FakeClaimStore()
    rig = Rig.build(claims=claims)
    token, other = f"twice-{tag()}", f"once-{tag()}"
    rig.resolver.knows(token, other)
    rig.queue.send_all([token, token, f"x-amzn-marketplace-token={token}", token, other])
    outcomes = [await rig.handle_next() for _ in range(5)]
    assert outcomes == [
        Outcome.PUBLISHED,
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
        Outcome.PUBLISHED,
    ]
    assert rig.handler.tally.outcomes["duplicate"] == 3
    assert rig.publisher.event_ids() == [event_id_for(token), event_id_for(other)]
    assert claims.records[event_id_for(token)].status == "COMPLETE"
    assert rig.queue.left() == []  # the duplicates are deleted, not left to come back


async def test_a_token_claimed_by_another_worker_waits_for_its_lease() -> None:
    queue, claims = FakeQueue(), FakeClaimStore()
    first = Rig.build(queue=queue, claims=claims)
    second = Rig.build(queue=queue, claims=claims, publisher=first.publisher)
    token = f"busy-{tag()}"
    for rig in (first, second):
        rig.resolver.knows(token)
    queue.send_all([token, token])
    first.resolver.gate = asyncio.Event()
    publishing = asyncio.create_task(first.handle_next())
    await eventually(lambda: first.resolver.active == 1)

    with capture_logs() as logs:
        assert await second.handle_next() is Outcome.REQUEUED
    assert "claim_busy" in [entry["event"] for entry in logs]
    lease = first.settings.visibility_timeout_seconds + CLOCK_SKEW_SECONDS
    assert queue.visibility_changes == [(token, int(lease) + 1)]  # when the lease ends
    assert second.resolver.calls == []

    first.resolver.gate.set()
    assert await publishing is Outcome.PUBLISHED
    queue.time_passes()
    assert await second.handle_next() is Outcome.DUPLICATE
    assert first.publisher.event_ids() == [event_id_for(token)]


async def test_an_idempotency_table_outage_is_held_then_claimed() -> None:
    claims = FakeClaimStore()
    rig = Rig.build(claims=claims)
    token = f"good-{tag()}"
    rig.resolver.knows(token)
    claims.trouble.break_with(no_connection())
    rig.queue.send(token)
    repair = when_held(rig.hold, Component.IDEMPOTENCY_TABLE, claims.trouble.repair)
    with capture_logs() as logs:
        assert await rig.handle_next() is Outcome.PUBLISHED
    await repair
    assert held(logs) == [("outage", "idempotency_table"), ("fault_cleared", "idempotency_table")]
    assert claims.completed == [event_id_for(token)]

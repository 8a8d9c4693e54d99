"""The CustomerRegistered event: a stable UUIDv5 id per token, the schema of
``schemas/customer-registered.schema.json``, and never the token itself."""

from __future__ import annotations

import json
import re
import string
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support import schema_validator
from worker.core.errors import MalformedMessage
from worker.core.events import (
    EVENT_ID_NAMESPACE,
    EVENT_TYPE,
    SCHEMA_VERSION,
    ResolvedCustomer,
    customer_registered,
    encode,
    event_id_for,
    token_ref,
    token_sha256,
)
from worker.core.request import RegistrationRequest, parse_body

EVENT_VALIDATOR = schema_validator("customer-registered")
FULL_CUSTOMER = ResolvedCustomer(
    product_code="prod-abc",
    customer_identifier="cust-1",
    customer_aws_account_id="123456789012",
    license_arn="arn:aws:license-manager::123456789012:license:l-0123",
)
BARE_CUSTOMER = ResolvedCustomer(product_code="prod-abc")
# Long enough that finding one inside a 64-hex digest or a uuid by chance is impossible.
secret_tokens = st.text(alphabet=string.ascii_letters + string.digits + "+/=", min_size=24)
PROPERTY = settings(max_examples=200, deadline=None)


def test_event_id_is_a_stable_uuid5_of_the_token_digest() -> None:
    event_id = event_id_for("token-A")
    assert event_id == event_id_for("token-A")
    assert event_id != event_id_for("token-B")
    parsed = uuid.UUID(event_id)
    assert parsed.version == 5
    assert parsed == uuid.uuid5(EVENT_ID_NAMESPACE, token_sha256("token-A"))


def test_event_id_and_token_ref_are_pinned_across_releases() -> None:
    # Subscribers deduplicate on the id and operators grep logs for the ref: a change of
    # namespace or hashing would make old and new deliveries of one token differ.
    assert event_id_for("AbC123==") == "ecd7d8f4-4b0b-5bd3-a6c5-c99c3aa0b2bc"
    assert token_ref("AbC123==") == "60289fa05dff"


def test_token_ref_is_12_hex_characters_of_the_digest() -> None:
    ref = token_ref("token-A")
    assert re.fullmatch(r"[0-9a-f]{12}", ref)
    assert token_sha256("token-A").startswith(ref)
    assert ref != token_ref("token-B")


@PROPERTY
@given(secret_tokens, secret_tokens)
def test_ids_and_refs_are_functions_of_the_token(first: str, second: str) -> None:
    assert event_id_for(first) == event_id_for(first)
    assert uuid.UUID(event_id_for(first)).version == 5
    assert re.fullmatch(r"[0-9a-f]{12}", token_ref(first))
    if first != second:
        assert event_id_for(first) != event_id_for(second)
        assert token_ref(first) != token_ref(second)


def test_event_with_every_field() -> None:
    request = RegistrationRequest(
        token="tok-secret-123",
        body_format="json",
        offer_type="free-trial",
        correlation_id="req-9",
        received_at=datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        metadata={"source": "web"},
    )
    occurred = datetime(2024, 5, 1, 10, 0, 1, 234_567, tzinfo=UTC)
    event = customer_registered(request, FULL_CUSTOMER, occurred)
    assert list(EVENT_VALIDATOR.iter_errors(event)) == []
    assert event["schema_version"] == SCHEMA_VERSION
    assert event["event_type"] == EVENT_TYPE
    assert event["event_id"] == event_id_for("tok-secret-123")
    assert event["occurred_at"] == "2024-05-01T10:00:01.234Z"
    assert event["received_at"] == "2024-05-01T12:00:00+02:00"
    assert event["customer_identifier"] == "cust-1"
    assert event["metadata"] == {"source": "web"}
    assert event["token_sha256"] == token_sha256("tok-secret-123")


def test_event_with_optional_fields_none_is_schema_valid() -> None:
    request = RegistrationRequest(token="tok-secret-123", body_format="token")
    event = customer_registered(request, BARE_CUSTOMER)
    assert list(EVENT_VALIDATOR.iter_errors(event)) == []
    for name in (
        "customer_identifier",
        "customer_aws_account_id",
        "license_arn",
        "offer_type",
        "correlation_id",
        "received_at",
    ):
        assert event[name] is None
    assert event["metadata"] == {}
    occurred = datetime.fromisoformat(event["occurred_at"])
    assert abs(datetime.now(UTC) - occurred) < timedelta(minutes=1)


def test_encode_is_compact_and_sorted() -> None:
    event = customer_registered(
        RegistrationRequest(token="tok-secret-123", body_format="token"), BARE_CUSTOMER
    )
    text = encode(event)
    assert json.loads(text) == event
    assert ", " not in text
    assert list(json.loads(text)) == sorted(event)


@PROPERTY
@given(secret_tokens, st.sampled_from([FULL_CUSTOMER, BARE_CUSTOMER]))
def test_the_token_never_appears_in_the_event(token: str, customer: ResolvedCustomer) -> None:
    request = RegistrationRequest(
        token=token, body_format="json", correlation_id="corr-1", metadata={"k": "v"}
    )
    event = customer_registered(request, customer)
    assert token not in encode(event)
    assert token not in json.dumps(event, ensure_ascii=False)
    assert event["token_sha256"] == token_sha256(token)


whole_minute_zones = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
odd_zones = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59, seconds=59),
    max_value=timedelta(hours=23, minutes=59, seconds=59),
).map(timezone)


@PROPERTY
@given(
    secret_tokens,
    st.datetimes(timezones=whole_minute_zones | odd_zones),
    st.sampled_from([str.upper, str.lower]),
)
@example("A" * 24, datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(seconds=3630))), str.upper)
def test_events_from_parsed_envelopes_are_schema_valid(
    token: str, received: datetime, case: Callable[[str], str]
) -> None:
    # Whatever received_at the parser accepts must come out as a valid date-time.
    body = json.dumps({"registration_token": token, "received_at": case(received.isoformat())})
    try:
        request = parse_body(body)
    except MalformedMessage as error:
        rejected = error.detail
    else:
        event = customer_registered(request, FULL_CUSTOMER)
        assert list(EVENT_VALIDATOR.iter_errors(event)) == []
        assert token not in encode(event)
        return
    assert "received_at" in rejected

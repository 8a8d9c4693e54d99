"""Tests for ``worker.core.request.parse_body``: the three body shapes, every malformed body
with its reason, and hypothesis properties over hostile bodies.

Run ``pytest tests/core/test_request.py --hypothesis-show-statistics`` to see how many bodies
each property tried.
"""

from __future__ import annotations

import json
import re
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.support import schema_validator
from worker.core.errors import DeadLetterReason, MalformedMessage
from worker.core.events import token_ref
from worker.core.request import (
    FORM_FIELD_PREFIX,
    MAX_BODY_LENGTH,
    MAX_TOKEN_LENGTH,
    OFFER_TYPE_FIELD,
    TOKEN_FIELD,
    RegistrationRequest,
    parse_body,
)

ACCEPTED_TOKEN = re.compile(r"[\x21-\x7e]{1,2048}")
PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")
ENVELOPE_VALIDATOR = schema_validator("registration-request")
# Fields whose schema check is a regex: see python_dollar_quirk.
PATTERN_CHECKED = ("registration_token", "offer_type", "correlation_id", "received_at")

MAIN = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECONDARY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rejection(body: str) -> str:
    """The detail of the MalformedMessage that ``body`` must raise."""
    with pytest.raises(MalformedMessage) as caught:
        parse_body(body)
    assert caught.value.reason is DeadLetterReason.MALFORMED_MESSAGE
    return caught.value.detail


def envelope(**fields: Any) -> str:
    return json.dumps({"registration_token": "tok-123", **fields})


# ---------------------------------------------------------------- accepted shapes


def test_bare_token_is_taken_whole_and_stripped() -> None:
    request = parse_body("  AbC+/9=-_.~tok\n")
    assert request == RegistrationRequest(token="AbC+/9=-_.~tok", body_format="token")


def test_browser_form_body_is_url_decoded() -> None:
    body = f"{TOKEN_FIELD}=AbC%2Bd%2Fe%3D%3D&{OFFER_TYPE_FIELD}=free-trial"
    request = parse_body(body)
    assert request.token == "AbC+d/e=="
    assert request.body_format == "form"
    assert request.offer_type == "free-trial"


def test_form_fields_in_any_order_unknown_fields_ignored_blank_offer_is_none() -> None:
    request = parse_body(f"utm=x&{OFFER_TYPE_FIELD}=&{TOKEN_FIELD}=tok")
    assert (request.token, request.offer_type, request.body_format) == ("tok", None, "form")


def test_json_envelope_with_every_field() -> None:
    body = json.dumps(
        {
            "registration_token": "tok-123",
            "offer_type": "free-trial",
            "correlation_id": "req 42",
            "received_at": "2024-05-01T12:00:00.250+02:00",
            "metadata": {"source": "web", "campaign:id": "c/7"},
        }
    )
    request = parse_body(body)
    assert request.token == "tok-123"
    assert request.body_format == "json"
    assert request.offer_type == "free-trial"
    assert request.correlation_id == "req 42"
    assert request.received_at == datetime(2024, 5, 1, 10, 0, 0, 250_000, tzinfo=UTC)
    assert dict(request.metadata) == {"source": "web", "campaign:id": "c/7"}


def test_received_at_takes_lower_case_t_and_z_as_rfc_3339_allows() -> None:
    request = parse_body(envelope(received_at="2024-05-01t12:00:00.5z"))
    assert request.received_at == datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)


def test_json_envelope_optional_fields_may_be_null() -> None:
    request = parse_body(
        envelope(offer_type=None, correlation_id=None, received_at=None, metadata=None)
    )
    assert request == RegistrationRequest(token="tok-123", body_format="json")


def test_metadata_cannot_be_changed_through_the_request() -> None:
    request = parse_body(envelope(metadata={"a": "b"}))
    with pytest.raises(TypeError):
        request.metadata["a"] = "c"  # type: ignore[index]


def test_token_at_the_length_limit_is_accepted() -> None:
    token = "A" * MAX_TOKEN_LENGTH
    assert parse_body(token).token == token


# ---------------------------------------------------------------- malformed bodies

MALFORMED = [
    ("", "body is empty"),
    (" \n\t\r ", "body is empty"),
    ("{}", "JSON body has no registration_token"),
    ('{"offer_type": "free-trial"}', "JSON body has no registration_token"),
    ('{"registration_token": 123}', "registration token is missing or not a string"),
    ('{"registration_token": ""}', "registration token is missing or not a string"),
    ('{"registration_token": null}', "registration token is missing or not a string"),
    ('{"registration_token": ["tok"]}', "registration token is missing or not a string"),
    (envelope(offer_type=5), "offer_type must be a short printable string"),
    (envelope(offer_type="free trial"), "offer_type must be a short printable string"),
    (envelope(offer_type="x" * 65), "offer_type must be a short printable string"),
    (envelope(correlation_id=["a"]), "correlation_id must be a short printable string"),
    (envelope(correlation_id="tab\there"), "correlation_id must be a short printable string"),
    (envelope(correlation_id="c" * 257), "correlation_id must be a short printable string"),
    (envelope(metadata=["a"]), "metadata must be an object of at most 20 items"),
    (envelope(metadata={f"k{i}": "v" for i in range(21)}), "at most 20 items"),
    (envelope(metadata={"k": 1}), "metadata values must be strings of at most 1024"),
    (envelope(metadata={"k": "v" * 1025}), "metadata values must be strings of at most 1024"),
    (envelope(metadata={"no spaces": "v"}), "metadata keys must be short identifiers"),
    (envelope(metadata={"k" * 65: "v"}), "metadata keys must be short identifiers"),
    (envelope(token="other"), "JSON body has 1 unknown key (5 characters, sha256 3c469e9d6c58;"),
    ('["tok-123"]', "JSON body is not an object"),
    ('"tok-123"', "JSON body is not an object"),
    ('{"registration_token": "tok"', "body looks like JSON but does not parse"),
    ('{"registration_token": ' + "1" * 5000 + "}", "body looks like JSON but does not parse"),
    (
        '{"registration_token": "a", "registration_token": "b"}',
        "JSON body repeats the key registration_token",
    ),
    ("A" * 10_240, "registration token is 10240 characters, over 2048"),
    (envelope(registration_token="A" * 10_240), "registration token is 10240 characters"),
    ("tok\x01en", "registration token may only hold printable ASCII, no spaces"),
    ("tok\x7fen", "registration token may only hold printable ASCII, no spaces"),
    ("tok en", "registration token may only hold printable ASCII, no spaces"),
    ("tokén", "registration token may only hold printable ASCII, no spaces"),
    ("tok\u200ben", "registration token may only hold printable ASCII, no spaces"),
    (envelope(registration_token="tok\u0000"), "printable ASCII, no spaces"),
    (f"{TOKEN_FIELD}=a&{TOKEN_FIELD}=b", f"form body has 2 {TOKEN_FIELD} fields, expected 1"),
    (f"{OFFER_TYPE_FIELD}=free-trial", f"form body has 0 {TOKEN_FIELD} fields, expected 1"),
    (
        f"{TOKEN_FIELD}=a&{OFFER_TYPE_FIELD}=x&{OFFER_TYPE_FIELD}=y",
        f"form body repeats {OFFER_TYPE_FIELD}",
    ),
    (f"{TOKEN_FIELD}=a&{OFFER_TYPE_FIELD}=free%20trial", "offer type must be a short printable"),
    (f"{TOKEN_FIELD}=a&&x=1", "form body has a field that is not name=value"),
    (f"{TOKEN_FIELD}", "form body has a field that is not name=value"),
    (f"{TOKEN_FIELD}=a" + "&x=1" * 20, "form body has 21 fields, over 20"),
    (f"{TOKEN_FIELD}=AbC+def", "'+' in a form body means a space"),
    (f"{TOKEN_FIELD}=AbC%20def", "printable ASCII, no spaces"),
    (f"{TOKEN_FIELD}=tok%C3%A9", "printable ASCII, no spaces"),
    (envelope(received_at="2024-05-01T12:00:00"), "received_at must carry a time zone"),
    (envelope(received_at="2024-05-01T12:00:00.5"), "received_at must carry a time zone"),
    (envelope(received_at="yesterday"), "received_at must be an RFC 3339 timestamp string"),
    (envelope(received_at=1714564800), "received_at must be an RFC 3339 timestamp string"),
    (envelope(received_at="2024-05-01 12:00:00Z"), "RFC 3339 timestamp"),
    (envelope(received_at="2024-05-01T12:00:00z "), "RFC 3339 timestamp"),
    (envelope(received_at="20240501T120000Z"), "RFC 3339 timestamp"),
    (envelope(received_at="2024-05-01T12:00:00+01:00:30"), "RFC 3339 timestamp"),
    (envelope(received_at="2024-05-01T12:00:00+0100"), "RFC 3339 timestamp"),
    (envelope(received_at="2024-12-31T23:59:60Z"), "RFC 3339 timestamp"),
    (envelope(received_at="2024-05-01T12:00:00Z\n"), "RFC 3339 timestamp"),
    (envelope(received_at="2024-05-01T12:00:00." + "1" * 60 + "Z"), "RFC 3339 timestamp"),
    (envelope(received_at="2023-02-29T12:00:00Z"), "received_at is not a calendar date"),
    (envelope(received_at="0000-01-01T00:00:00Z"), "received_at is not a calendar date"),
    ("x" * (MAX_BODY_LENGTH + 1), f"body is {MAX_BODY_LENGTH + 1} characters, over 16384"),
    ("[" * 100_000, "body is 100000 characters, over 16384"),
    ("[" * (MAX_BODY_LENGTH - 1), "body looks like JSON but does not parse"),
    ('{"registration_token": "a", "metadata": ' + "[" * 16_000, "does not parse"),
    ('{"registration_token": "a", "metadata": ' + '{"k":' * 3000, "does not parse"),
]


@pytest.mark.parametrize(("body", "reason"), MALFORMED, ids=[c[1][:40] for c in MALFORMED])
def test_malformed_body_names_its_reason(body: str, reason: str) -> None:
    detail = rejection(body)
    assert reason in detail
    assert PRINTABLE_ASCII.fullmatch(detail)


def test_rejection_details_never_quote_a_token_fragment() -> None:
    # A mangled form body whose stray field is the token; parse_qs would quote it.
    secret = "SECRETtokenMaterial123"
    detail = rejection(f"{secret}&{TOKEN_FIELD}=abc")
    assert "not name=value" in detail
    assert secret not in detail


ENVELOPE_KEYS_TEXT = "correlation_id, metadata, offer_type, received_at, registration_token"


def test_unknown_keys_are_counted_and_hashed_never_quoted() -> None:
    # A sender can put the token in a key name, and a key is any text at all.
    secret = "SECRETtokenInAKeyName0123456789"
    keys = {secret: 1, "\u0000": 1, "\ud800x": 1, **{f"k{i}": i for i in range(8)}}
    detail = rejection(envelope(**keys))
    assert detail == (
        "JSON body has 11 unknown keys (1 character, sha256 6e340b9cffb3;"
        " 31 characters, sha256 " + token_ref(secret) + "; 2 characters, sha256 d1a5ac9a015f;"
        f" and 8 more); the envelope's keys are {ENVELOPE_KEYS_TEXT}"
    )
    assert rejection(envelope(**{"\ud800x": 1})).startswith(
        "JSON body has 1 unknown key (2 characters, sha256 "
    )


def test_an_unknown_key_like_an_envelope_key_gets_a_hint_naming_the_envelope_key() -> None:
    detail = rejection(envelope(offerType="free-trial"))
    assert detail == (
        "JSON body has 1 unknown key (9 characters, sha256 "
        + token_ref("offerType")
        + f"; perhaps meant offer_type); the envelope's keys are {ENVELOPE_KEYS_TEXT}"
    )
    assert "offerType" not in detail


def test_repeated_keys_inside_metadata_are_rejected_too() -> None:
    body = '{"registration_token": "a", "metadata": {"k": "1", "k": "2"}}'
    assert rejection(body) == f"JSON body repeats a key of 1 character (sha256 {token_ref('k')})"
    secret = "SECRETtokenInARepeatedKey42"
    body = f'{{"registration_token": "a", "metadata": {{"{secret}": "1", "{secret}": "2"}}}}'
    assert secret not in rejection(body)


def test_an_impossible_date_is_not_quoted() -> None:
    detail = rejection(envelope(received_at="2023-02-29T12:00:00.9876543210Z"))
    assert detail.startswith("received_at is not a calendar date")
    assert not any(digits in detail for digits in ["2023", "9876543210"])


def test_repr_of_a_request_shows_the_token_only_as_its_reference() -> None:
    token = "SECRETtokenInARepr-" + "x" * 40
    request = parse_body(envelope(registration_token=token, offer_type="free-trial"))
    shown = repr(request)
    assert token[:8] not in shown
    assert f"token_ref='{token_ref(token)}'" in shown
    assert "offer_type='free-trial'" in shown
    assert token[:8] not in str(request)
    assert token[:8] not in repr([request])  # containers use repr too


# Where a sender could put a token in a body that is then refused: every template puts
# SECRET somewhere, and the rejection must not hold any 8-character piece of it.
SECRET_PLACES = [
    '{"registration_token": "a", "SECRET": 1}',
    '{"SECRET": "a"}',
    '{"registration_token": "a", "SECRET": 1, "SECRET": 2}',
    '{"registration_token": "a", "metadata": {"SECRET": "1", "SECRET": "2"}}',
    '{"registration_token": "a", "metadata": {"SECRET x": "1"}}',
    '{"registration_token": "a", "metadata": {"k": "SECRET' + "x" * 1024 + '"}}',
    '{"registration_token": "a", "offer_type": "SECRET x"}',
    '{"registration_token": "a", "correlation_id": "SECRET\\t"}',
    '{"registration_token": "a", "received_at": "SECRET"}',
    '{"registration_token": "SECRET x"}',
    '{"registration_token": "SECRET", "registration_token": "SECRET"}',
    '{"registration_token": "SECRET"',
    '["SECRET"]',
    '"SECRET"',
    "SECRET x",
    "SECRET&" + TOKEN_FIELD + "=a",
    TOKEN_FIELD + "=SECRET&" + TOKEN_FIELD + "=SECRET",
    TOKEN_FIELD + "=SECRET+x",
    TOKEN_FIELD + "=a&" + OFFER_TYPE_FIELD + "=SECRET%20x",
    TOKEN_FIELD + "=a&SECRET",
]
FIELD_NAMES = " ".join(
    [
        "correlation_id metadata offer_type received_at registration_token",
        TOKEN_FIELD,
        OFFER_TYPE_FIELD,
    ]
)
secrets_ = st.text(alphabet=string.ascii_letters + string.digits, min_size=16, max_size=80)


@SECONDARY
@given(st.sampled_from(SECRET_PLACES), secrets_)
def test_a_rejection_holds_no_piece_of_the_body(template: str, secret: str) -> None:
    detail = rejection(template.replace("SECRET", secret))
    pieces = {secret[start : start + 8] for start in range(len(secret) - 7)}
    # A piece that spells part of a field name ("egistrat") is the message's own words.
    leaked = [piece for piece in pieces if piece in detail and piece not in FIELD_NAMES]
    assert not leaked, detail


# ---------------------------------------------------------------- property: never crash

FRAGMENTS = [
    "{",
    "}",
    "[",
    "]",
    '"',
    ":",
    ",",
    "\\",
    "\\u0000",
    "\\ud800",
    "null",
    "true",
    "1e999",
    "NaN",
    "-0",
    '"registration_token"',
    '"offer_type"',
    '"received_at"',
    '"metadata"',
    '"correlation_id"',
    '"2024-02-30T00:00:00Z"',
    TOKEN_FIELD,
    OFFER_TYPE_FIELD,
    FORM_FIELD_PREFIX,
    "=",
    "&",
    "%",
    "%2B",
    "%C3",
    "%00",
    "+",
    "free-trial",
    " ",
    "\n",
    "\x00",
    "\x85",
    "é",
    "\U0001f600",
    "AbC123==",
]

fragment_bodies = st.lists(
    st.sampled_from(FRAGMENTS) | st.text(max_size=8), min_size=1, max_size=30
).map("".join)
decoded_binary = st.tuples(st.binary(max_size=300), st.sampled_from(["surrogateescape", "replace"]))
# Plain text, lone surrogates (as a JSON \ud800 escape or surrogateescape decoding gives),
# raw bytes decoded leniently, and bodies put together from JSON and form fragments.
hostile_bodies = st.one_of(
    st.text(),
    st.text(alphabet=st.characters() | st.characters(categories=["Cs"]), max_size=200),
    decoded_binary.map(lambda pair: pair[0].decode("utf-8", pair[1])),
    fragment_bodies,
    fragment_bodies.map(lambda tail: f"{TOKEN_FIELD}={tail}"),
    fragment_bodies.map(lambda tail: '{"registration_token": ' + tail),
)


def check_outcome(body: str) -> None:
    """parse_body's whole contract: a valid token, or a MalformedMessage with a reason."""
    try:
        request = parse_body(body)
    except MalformedMessage as error:
        detail = error.detail
    else:
        assert ACCEPTED_TOKEN.fullmatch(request.token)
        return
    assert detail
    assert PRINTABLE_ASCII.fullmatch(detail), detail


@MAIN
@given(hostile_bodies)
@example("[" * 16_000)
@example('{"registration_token": "a", "metadata": ' + "[" * 16_000)
@example("x-amzn-marketplace-token=%ff%fe")
@example('{"registration_token": "\\ud800"}')
def test_any_body_yields_a_valid_token_or_a_reasoned_rejection(body: str) -> None:
    check_outcome(body)


# ---------------------------------------------------------------- property: schema agreement

printable_no_space = string.ascii_letters + string.digits + string.punctuation
tokens = st.text(alphabet=printable_no_space, min_size=1, max_size=MAX_TOKEN_LENGTH)
whole_minute_zones = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
any_zones = st.timedeltas(
    min_value=-timedelta(hours=23, minutes=59, seconds=59),
    max_value=timedelta(hours=23, minutes=59, seconds=59),
).map(timezone)
rfc3339_timestamps = st.builds(
    lambda moment, zone, utc_as_z: (
        moment.replace(tzinfo=zone).isoformat().replace("+00:00", "Z" if utc_as_z else "+00:00")
    ),
    st.datetimes(),
    whole_minute_zones,
    st.booleans(),
)
timestamp_like = st.from_regex(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{0,12})?)?"
    r"([Zz]|[+-]\d{2}(:?\d{2}(:\d{2})?)?)?\n?",
    fullmatch=True,
)
odd_timestamps = st.one_of(
    st.builds(
        lambda moment, zone: moment.replace(tzinfo=zone).isoformat(), st.datetimes(), any_zones
    ),
    st.builds(lambda m, z: m.replace(tzinfo=z).isoformat(sep=" "), st.datetimes(), any_zones),
    st.datetimes().map(datetime.isoformat),  # naive
    timestamp_like,
    st.text(alphabet="0123456789-:TZ+.", max_size=40),
)


def wrong_type() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(), max_size=2))


# For each envelope key: values the schema allows, and values near or past its edges.
GOOD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "registration_token": tokens,
    "offer_type": st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    "correlation_id": st.none() | st.text(alphabet=string.printable[:95], min_size=1, max_size=256),
    "received_at": st.none() | rfc3339_timestamps,
    "metadata": st.none()
    | st.dictionaries(
        st.from_regex(r"[A-Za-z0-9_.:/-]{1,64}", fullmatch=True), st.text(max_size=40), max_size=20
    ),
}
EDGE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "registration_token": st.text(max_size=20) | st.text(min_size=2040, max_size=2060),
    "offer_type": st.from_regex(r"[A-Za-z0-9_-]{1,70}\n?", fullmatch=True) | st.text(max_size=70),
    "correlation_id": st.text(
        alphabet=st.characters(min_codepoint=0x1F, max_codepoint=0x80), max_size=260
    ),
    "received_at": odd_timestamps,
    "metadata": st.dictionaries(
        st.from_regex(r"[A-Za-z0-9_.:/-]{1,66}\n?", fullmatch=True) | st.text(max_size=5),
        st.text(max_size=8) | st.text(min_size=1020, max_size=1030) | wrong_type(),
        max_size=22,
    ),
}


@st.composite
def envelope_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A schema-valid envelope, then zero to two keys spoilt, dropped or added."""
    present = draw(st.sets(st.sampled_from(sorted(GOOD_VALUES))))
    document = {key: draw(GOOD_VALUES[key]) for key in sorted(present | {"registration_token"})}
    for key in draw(st.lists(st.sampled_from(sorted(GOOD_VALUES)), max_size=2, unique=True)):
        spoilt = draw(st.sampled_from(["edge", "wrong type", "dropped"]))
        if spoilt == "dropped":
            document.pop(key, None)
        else:
            document[key] = draw(EDGE_VALUES[key] if spoilt == "edge" else wrong_type())
    if draw(st.integers(0, 9)) == 0:
        document[draw(st.text(max_size=10))] = draw(st.text(max_size=10))
    return document


def python_dollar_quirk(document: dict[str, Any]) -> bool:
    """jsonschema runs patterns (and rfc3339-validator its regex) with Python's ``re``,
    where ``$`` also matches before a final newline; JSON Schema patterns are ECMA 262
    regexes, where it does not. So "tok\\n" passes the validator but not the schema as
    written: the parser is right to refuse it."""
    values = [document.get(key) for key in PATTERN_CHECKED]
    metadata = document.get("metadata")
    if isinstance(metadata, dict):
        values.extend(metadata)
    return any(isinstance(value, str) and value.endswith("\n") for value in values)


def schema_accepts(document: dict[str, Any], body: str) -> bool:
    return (
        ENVELOPE_VALIDATOR.is_valid(document)
        and not python_dollar_quirk(document)
        and len(body) <= MAX_BODY_LENGTH
    )


def parser_accepts(body: str) -> RegistrationRequest | None:
    try:
        return parse_body(body)
    except MalformedMessage:
        return None


@MAIN
@given(envelope_documents(), st.booleans())
@example({"registration_token": "tok", "received_at": "2024-05-01 12:00:00Z"}, True)
@example({"registration_token": "tok", "received_at": "2024-05-01T12:00:00+01:00:30"}, True)
@example({"registration_token": "tok", "received_at": "2024-12-31T23:59:60Z"}, True)
@example({"registration_token": "tok", "received_at": "2024-05-01t12:00:00z"}, True)
@example({"registration_token": "tok\n"}, True)
@example({"registration_token": "tok", "metadata": {f"k{i}": "v" * 1000 for i in range(17)}}, True)
def test_parser_and_schema_agree_on_envelopes(document: dict[str, Any], ascii_only: bool) -> None:
    body = json.dumps(document, ensure_ascii=ascii_only)
    request = parser_accepts(body)
    event("parser accepts" if request else "parser rejects")
    assert (request is not None) == schema_accepts(document, body)
    if request is not None:
        assert request.token == document["registration_token"]
        assert request.offer_type == document.get("offer_type")
        assert request.correlation_id == document.get("correlation_id")
        assert dict(request.metadata) == (document.get("metadata") or {})
        assert (request.received_at is None) == (document.get("received_at") is None)


@SECONDARY
@given(hostile_bodies | envelope_documents().map(json.dumps))
def test_every_accepted_json_body_is_schema_valid(body: str) -> None:
    request = parser_accepts(body)
    if request is not None and request.body_format == "json":
        document = json.loads(body)
        assert ENVELOPE_VALIDATOR.is_valid(document)
        assert not python_dollar_quirk(document)


# ---------------------------------------------------------------- property: round trip


def bare_is_unambiguous(token: str) -> bool:
    """A bare body is read as JSON or as a form body when it looks like one; real tokens
    (base64-like) never do."""
    return not token.startswith(("{", "[", '"', FORM_FIELD_PREFIX)) and (
        "&" + FORM_FIELD_PREFIX not in token
    )


@SECONDARY
@given(tokens, st.sampled_from([None, "free-trial"]))
@example("AbC+/9==", "free-trial")
@example("a%2Bb&c=d", None)
@example('{"not":"json"}', None)
@example(f"{FORM_FIELD_PREFIX}look-alike", None)
def test_every_shape_yields_the_same_token(token: str, offer_type: str | None) -> None:
    fields = {TOKEN_FIELD: token, **({OFFER_TYPE_FIELD: offer_type} if offer_type else {})}
    form = parse_body(urlencode(fields))
    as_json = parse_body(json.dumps({"registration_token": token, "offer_type": offer_type}))
    assert (form.token, form.offer_type, form.body_format) == (token, offer_type, "form")
    assert (as_json.token, as_json.offer_type, as_json.body_format) == (token, offer_type, "json")
    if bare_is_unambiguous(token):
        bare = parse_body(token)
        assert (bare.token, bare.body_format) == (token, "token")
    else:
        check_outcome(token)

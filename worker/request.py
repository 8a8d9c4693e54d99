"""Parse an inbound SQS message body into a registration request.

Three shapes are accepted, because the web tier "drops raw tokens":
- the bare token (``AbC123...``);
- the browser's form body (``x-amzn-marketplace-token=...&x-amzn-marketplace-offer-type=...``);
- the JSON envelope of ``schemas/registration-request.schema.json``.

Anything else raises ``MalformedMessage`` with a reason a person can act on. The reason
is printable ASCII and never quotes the body's token: it is logged and goes into the
dead-letter message's attributes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Literal
from urllib.parse import parse_qs

from worker.errors import MalformedMessage

FORM_FIELD_PREFIX: Final = "x-amzn-marketplace-"
TOKEN_FIELD: Final = FORM_FIELD_PREFIX + "token"
OFFER_TYPE_FIELD: Final = FORM_FIELD_PREFIX + "offer-type"

MAX_TOKEN_LENGTH: Final = 2048
MAX_BODY_LENGTH: Final = 16_384
MAX_FIELD_LENGTH: Final = 256
MAX_METADATA_ITEMS: Final = 20
MAX_METADATA_VALUE_LENGTH: Final = 1024
MAX_FORM_FIELDS: Final = 20
MAX_TIMESTAMP_LENGTH: Final = 64

# Printable ASCII without spaces: real tokens are base64-like (letters, digits, + / = -).
TOKEN_PATTERN: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_TOKEN_LENGTH}}}")
OFFER_TYPE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
FIELD_PATTERN: Final = re.compile(rf"[\x20-\x7e]{{1,{MAX_FIELD_LENGTH}}}")
METADATA_KEY_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
# RFC 3339 date-time as the schema's format checker reads it: no leap second, offsets of
# whole minutes. (fromisoformat alone also takes "2024-01-01 00:00", week dates and
# second-precision offsets, which the published event's date-time could not carry.)
TIMESTAMP_PATTERN: Final = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-\d{2}[Tt](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?"
    r"(?P<zone>[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)?",
    re.ASCII,
)
ENVELOPE_KEYS: Final = frozenset(
    {"registration_token", "offer_type", "correlation_id", "received_at", "metadata"}
)

BodyFormat = Literal["token", "form", "json"]


@dataclass(frozen=True)
class RegistrationRequest:
    token: str
    body_format: BodyFormat
    offer_type: str | None = None
    correlation_id: str | None = None
    received_at: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def parse_body(body: str) -> RegistrationRequest:
    """Turn a message body into a request, or raise ``MalformedMessage``."""
    if len(body) > MAX_BODY_LENGTH:
        raise MalformedMessage(f"body is {len(body)} characters, over {MAX_BODY_LENGTH}")
    text = body.strip()
    if not text:
        raise MalformedMessage("body is empty")
    if text.startswith(("{", "[", '"')):  # tokens are base64-like and never start so
        return _parse_envelope(text)
    if text.startswith(FORM_FIELD_PREFIX) or "&" + FORM_FIELD_PREFIX in text:
        return _parse_form(text)
    return RegistrationRequest(token=_check_token(text), body_format="token")


def _check_token(token: object) -> str:
    if not isinstance(token, str) or not token:
        raise MalformedMessage("registration token is missing or not a string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise MalformedMessage(
            f"registration token is {len(token)} characters, over {MAX_TOKEN_LENGTH}"
        )
    if not TOKEN_PATTERN.fullmatch(token):
        raise MalformedMessage("registration token may only hold printable ASCII, no spaces")
    return token


def _shown(text: str, limit: int = 40) -> str:
    """Quote a piece of the body for an error text: escaped to printable ASCII, because
    the detail is logged and goes into an SQS message attribute."""
    return ascii(text[:limit])


def _check_optional(name: str, value: object, pattern: re.Pattern[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise MalformedMessage(f"{name} must be a short printable string")
    return value


def _parse_form(text: str) -> RegistrationRequest:
    # Checked here rather than by parse_qs(strict_parsing=True), whose error quotes the
    # field, and a field of a mangled body can be the token.
    pairs = text.split("&")
    if len(pairs) > MAX_FORM_FIELDS:
        raise MalformedMessage(f"form body has {len(pairs)} fields, over {MAX_FORM_FIELDS}")
    if not all("=" in pair for pair in pairs):
        raise MalformedMessage("form body has a field that is not name=value")
    fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    tokens = fields.get(TOKEN_FIELD, [])
    offer_types = fields.get(OFFER_TYPE_FIELD, [])
    if len(tokens) != 1:
        raise MalformedMessage(f"form body has {len(tokens)} {TOKEN_FIELD} fields, expected 1")
    if len(offer_types) > 1:
        raise MalformedMessage(f"form body repeats {OFFER_TYPE_FIELD}")
    if " " in tokens[0] and "+" in text:
        raise MalformedMessage(
            "form token holds a space: '+' in a form body means a space, so the web tier"
            " must URL-encode the token ('+' as %2B)"
        )
    offer_type = offer_types[0] if offer_types and offer_types[0] else None
    return RegistrationRequest(
        token=_check_token(tokens[0]),
        body_format="form",
        offer_type=_check_optional("offer type", offer_type, OFFER_TYPE_PATTERN),
    )


def _parse_envelope(text: str) -> RegistrationRequest:
    try:
        document = json.loads(text, object_pairs_hook=_object_without_repeats)
    except (ValueError, RecursionError) as error:
        raise MalformedMessage(f"body looks like JSON but does not parse: {error}") from None
    if not isinstance(document, dict):
        raise MalformedMessage("JSON body is not an object")
    unknown = sorted(set(document) - ENVELOPE_KEYS)
    if unknown:
        shown = ", ".join(_shown(key) for key in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise MalformedMessage(f"JSON body has unknown keys: {shown}{more}")
    if "registration_token" not in document:
        raise MalformedMessage("JSON body has no registration_token")
    return RegistrationRequest(
        token=_check_token(document["registration_token"]),
        body_format="json",
        offer_type=_check_optional("offer_type", document.get("offer_type"), OFFER_TYPE_PATTERN),
        correlation_id=_check_optional(
            "correlation_id", document.get("correlation_id"), FIELD_PATTERN
        ),
        received_at=_parse_timestamp(document.get("received_at")),
        metadata=_parse_metadata(document.get("metadata")),
    )


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of repeated keys; a reader that keeps the first would
    see another token, so a repeated key makes the body ambiguous, as in a form body."""
    document = dict(pairs)
    if len(document) != len(pairs):
        repeated = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise MalformedMessage(f"JSON body repeats the key {_shown(repeated)}")
    return document


def _parse_timestamp(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_LENGTH:
        shape = None
    else:
        shape = TIMESTAMP_PATTERN.fullmatch(value)
    if shape is None:
        raise MalformedMessage(
            "received_at must be an RFC 3339 timestamp string such as 2024-05-01T12:00:00Z"
        )
    if shape["zone"] is None:
        raise MalformedMessage("received_at must carry a time zone (Z or +hh:mm)")
    try:
        return datetime.fromisoformat(shape.string.upper())  # RFC 3339 allows t and z
    except ValueError:  # right shape, impossible date such as February 30
        raise MalformedMessage(
            f"received_at is not a calendar date: {_shown(shape.string)}"
        ) from None


def _parse_metadata(value: object) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict) or len(value) > MAX_METADATA_ITEMS:
        raise MalformedMessage(f"metadata must be an object of at most {MAX_METADATA_ITEMS} items")
    for key, item in value.items():
        if not METADATA_KEY_PATTERN.fullmatch(key):
            raise MalformedMessage("metadata keys must be short identifiers")
        if not isinstance(item, str) or len(item) > MAX_METADATA_VALUE_LENGTH:
            raise MalformedMessage(
                f"metadata values must be strings of at most {MAX_METADATA_VALUE_LENGTH} characters"
            )
    return MappingProxyType(dict(value))

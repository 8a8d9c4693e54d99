"""Parse an inbound SQS message body into a registration request.

Three shapes are accepted, because the web tier "drops raw tokens":
- the bare token (``AbC123...``);
- the browser's form body (``x-amzn-marketplace-token=...&x-amzn-marketplace-offer-type=...``);
- the JSON envelope of ``schemas/registration-request.schema.json``.

Anything else raises ``MalformedMessage`` with a reason a person can act on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal
from urllib.parse import parse_qs

from worker.errors import MalformedMessage

TOKEN_FIELD: Final = "x-amzn-marketplace-token"
OFFER_TYPE_FIELD: Final = "x-amzn-marketplace-offer-type"

MAX_TOKEN_LENGTH: Final = 2048
MAX_BODY_LENGTH: Final = 16_384
MAX_FIELD_LENGTH: Final = 256
MAX_METADATA_ITEMS: Final = 20
MAX_METADATA_VALUE_LENGTH: Final = 1024

# Printable ASCII without spaces: real tokens are base64-like (letters, digits, + / = -).
TOKEN_PATTERN: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_TOKEN_LENGTH}}}")
OFFER_TYPE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
FIELD_PATTERN: Final = re.compile(rf"[\x20-\x7e]{{1,{MAX_FIELD_LENGTH}}}")
METADATA_KEY_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
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
    if text.startswith(TOKEN_FIELD + "=") or "&" + TOKEN_FIELD + "=" in text:
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
        raise MalformedMessage("registration token has characters outside printable ASCII")
    return token


def _check_optional(name: str, value: object, pattern: re.Pattern[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise MalformedMessage(f"{name} must be a short printable string")
    return value


def _parse_form(text: str) -> RegistrationRequest:
    try:
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=True, max_num_fields=20)
    except ValueError as error:
        raise MalformedMessage(f"form body does not parse: {error}") from None
    tokens = fields.get(TOKEN_FIELD, [])
    offer_types = fields.get(OFFER_TYPE_FIELD, [])
    if len(tokens) != 1:
        raise MalformedMessage(f"form body has {len(tokens)} {TOKEN_FIELD} fields, expected 1")
    if len(offer_types) > 1:
        raise MalformedMessage(f"form body repeats {OFFER_TYPE_FIELD}")
    offer_type = offer_types[0] if offer_types and offer_types[0] else None
    return RegistrationRequest(
        token=_check_token(tokens[0]),
        body_format="form",
        offer_type=_check_optional("offer type", offer_type, OFFER_TYPE_PATTERN),
    )


def _parse_envelope(text: str) -> RegistrationRequest:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise MalformedMessage(f"body looks like JSON but does not parse: {error}") from None
    if not isinstance(document, dict):
        raise MalformedMessage("JSON body is not an object")
    unknown = sorted(set(document) - ENVELOPE_KEYS)
    if unknown:
        raise MalformedMessage(f"JSON body has unknown keys: {', '.join(unknown)[:200]}")
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


def _parse_timestamp(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise MalformedMessage("received_at must be an ISO 8601 timestamp string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedMessage("received_at must be an ISO 8601 timestamp string") from None
    if moment.tzinfo is None:
        raise MalformedMessage("received_at must carry a time zone")
    return moment


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

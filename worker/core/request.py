"""Parse an inbound SQS message body into a registration request.

Three shapes are accepted, because the web tier "drops raw tokens":
- the bare token (``AbC123...``);
- the browser's form body (``x-amzn-marketplace-token=...&x-amzn-marketplace-offer-type=...``);
- the JSON envelope of ``schemas/registration-request.schema.json``.

Anything else raises ``MalformedMessage`` with a reason a person can act on. The reason
is printable ASCII and quotes no text of the body at all: it is logged and goes into the
dead-letter message's attributes, and any piece of a body (a key name included) can be
a piece of a token. A key is named only when it is one of the envelope's own; any other
is described by its length and a 12-hex sha256 prefix.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Literal
from urllib.parse import parse_qs

from worker.core.errors import MalformedMessage

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
MAX_KEYS_DESCRIBED: Final = 3
KEY_REF_CHARS: Final = 12
# Unknown keys that are one of these, letters and digits only and lower-cased, get a
# hint naming the envelope key meant (the envelope's own name: never the key itself).
_KEY_HINTS: Final = {
    **{re.sub(r"[^a-z0-9]", "", key): key for key in ENVELOPE_KEYS},
    "token": "registration_token",
    "xamznmarketplacetoken": "registration_token",
    "xamznmarketplaceoffertype": "offer_type",
}

BodyFormat = Literal["token", "form", "json"]


@dataclass(frozen=True, repr=False)
class RegistrationRequest:
    token: str
    body_format: BodyFormat
    offer_type: str | None = None
    correlation_id: str | None = None
    received_at: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __repr__(self) -> str:
        """The token only as its sha256 prefix (``worker.core.events.token_ref``): a repr
        ends up in tracebacks, debug logs and test failure output."""
        return (
            f"RegistrationRequest(token_ref={sha256_ref(self.token)!r},"
            f" body_format={self.body_format!r}, offer_type={self.offer_type!r},"
            f" correlation_id={self.correlation_id!r}, received_at={self.received_at!r},"
            f" metadata={dict(self.metadata)!r})"
        )


def sha256_ref(text: str) -> str:
    """The first 12 hex digits of ``text``'s sha256: ``worker.core.events.token_ref`` for a
    token. Lone surrogates (possible in a JSON key) are hashed, not refused."""
    data = text.encode("utf-8", errors="surrogatepass")
    return hashlib.sha256(data).hexdigest()[:KEY_REF_CHARS]


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


def _key(key: str) -> str:
    """A JSON key for an error text without quoting it, unless it is an envelope key."""
    if key in ENVELOPE_KEYS:
        return f"the key {key}"
    return f"a key of {_characters(key)} (sha256 {sha256_ref(key)})"


def _unknown_keys(keys: list[str]) -> str:
    described = "; ".join(
        f"{_characters(key)}, sha256 {sha256_ref(key)}" for key in keys[:MAX_KEYS_DESCRIBED]
    )
    if len(keys) > MAX_KEYS_DESCRIBED:
        described += f"; and {len(keys) - MAX_KEYS_DESCRIBED} more"
    hints = sorted({_KEY_HINTS[n] for key in keys if (n := _normalized(key)) in _KEY_HINTS})
    if hints:
        described += f"; perhaps meant {' or '.join(hints)}"
    count = f"{len(keys)} unknown key{'s' if len(keys) > 1 else ''}"
    return (
        f"JSON body has {count} ({described}); the envelope's keys are"
        f" {', '.join(sorted(ENVELOPE_KEYS))}"
    )


def _characters(text: str) -> str:
    return f"{len(text)} character{'' if len(text) == 1 else 's'}"


def _normalized(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


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
    if unknown:  # a sender can put a token in a key name: never quote one
        raise MalformedMessage(_unknown_keys(unknown))
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
        raise MalformedMessage(f"JSON body repeats {_key(repeated)}")
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
            "received_at is not a calendar date (year 0, or a day its month does not have)"
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

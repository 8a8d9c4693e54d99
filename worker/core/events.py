"""The CustomerRegistered event: what downstream billing and provisioning consume.

Versioned by ``schema_version`` (``MAJOR.MINOR``: minor versions only add optional
fields; a major version would be published under a new detail type). ``event_id`` is
derived from the token, so every redelivery of one token yields the same id and
subscribers can deduplicate on it. The token itself is never published.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from worker.core.request import RegistrationRequest

if TYPE_CHECKING:
    from types_aiobotocore_sns.type_defs import MessageAttributeValueTypeDef

EVENT_TYPE: Final = "CustomerRegistered"
TRACEPARENT: Final = "traceparent"  # W3C Trace Context, as a message attribute's name
SCHEMA_VERSION: Final = "1.0"
# Fixed namespace so event ids are stable across deployments and versions.
EVENT_ID_NAMESPACE: Final = uuid.UUID("4f6d2f0e-8a8e-5b7c-9d51-3a1c0d6f2b10")


@dataclass(frozen=True)
class ResolvedCustomer:
    """ResolveCustomer's answer. Only ProductCode is always present: new SaaS products
    get CustomerAWSAccountId + LicenseArn instead of CustomerIdentifier."""

    product_code: str
    customer_identifier: str | None = None
    customer_aws_account_id: str | None = None
    license_arn: str | None = None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_ref(token: str) -> str:
    """A short hash that identifies a token in logs without revealing it."""
    return token_sha256(token)[:12]


def event_id_for(token: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, token_sha256(token)))


def customer_registered(
    request: RegistrationRequest, customer: ResolvedCustomer, occurred_at: datetime | None = None
) -> dict[str, Any]:
    moment = occurred_at or datetime.now(UTC)
    return {
        "schema_version": SCHEMA_VERSION,
        "event_type": EVENT_TYPE,
        "event_id": event_id_for(request.token),
        "occurred_at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "product_code": customer.product_code,
        "customer_identifier": customer.customer_identifier,
        "customer_aws_account_id": customer.customer_aws_account_id,
        "license_arn": customer.license_arn,
        "offer_type": request.offer_type,
        "correlation_id": request.correlation_id,
        "received_at": _iso(request.received_at),
        "metadata": dict(request.metadata),
        "token_sha256": token_sha256(request.token),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), sort_keys=True)


def sns_message_attributes(
    event: dict[str, Any], traceparent: str | None = None
) -> dict[str, MessageAttributeValueTypeDef]:
    """What subscription filters (and a trace) read from an SNS message's attributes."""
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        "event_type": {"DataType": "String", "StringValue": EVENT_TYPE},
        "product_code": {"DataType": "String", "StringValue": event["product_code"]},
        "schema_version": {"DataType": "String", "StringValue": SCHEMA_VERSION},
    }
    if traceparent:
        attributes[TRACEPARENT] = {"DataType": "String", "StringValue": traceparent}
    return attributes

"""One rooted error hierarchy. Each error says what the worker does next:

- ``Rejected``: the message itself is bad; it goes to the DLQ with ``reason``.
- ``TransientError``: try again later; the message is kept.
- ``ConfigurationFault``: the worker's own credentials or permissions are wrong; the
  message is kept in hand and the worker holds (``worker.core.fault_hold``), because a good
  token must never be blamed.
"""

from __future__ import annotations

from enum import StrEnum


class DeadLetterReason(StrEnum):
    MALFORMED_MESSAGE = "MalformedMessage"
    INVALID_TOKEN = "InvalidToken"
    EXPIRED_TOKEN = "ExpiredToken"
    DISABLED_API = "DisabledApi"
    PRODUCT_NOT_ALLOWED = "ProductNotAllowed"
    RETRIES_EXHAUSTED = "RetriesExhausted"


class RegworkerError(Exception):
    """Root of the worker's errors."""


class Rejected(RegworkerError):
    """The message can never succeed as it is: dead-letter it with this reason."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MalformedMessage(Rejected):
    def __init__(self, detail: str) -> None:
        super().__init__(DeadLetterReason.MALFORMED_MESSAGE, detail)


class TokenRefused(Rejected):
    """ResolveCustomer answered, refusing this token for itself (invalid, expired): the
    API works for the seller, which is evidence the fault hold can use."""


class TransientError(RegworkerError):
    """Worth retrying: throttling, 5xx, timeouts, connection errors."""


class ConfigurationFault(RegworkerError):
    """The worker's credentials, permissions or endpoints are wrong, not the message."""


class ApiDisabled(ConfigurationFault):
    """ResolveCustomer answered ``DisabledApiException``. AWS documents it as the API being
    disabled for the seller in the region: seller-wide, so it is held like any
    configuration fault. The hold's probe is the arbiter: when the probe token gets
    through and this token still gets the error, the token alone is refused and is
    dead-lettered as ``DisabledApi``."""


class PublishError(TransientError):
    """The event could not be published; the message stays and comes back.
    ``sender_fault``: the service refused this entry for itself (a validation error),
    not for a fault of its own or of the worker's credentials (throttling, internal
    errors, access denied), which the fault hold waits out."""

    def __init__(self, message: str, *, sender_fault: bool = False) -> None:
        super().__init__(message)
        self.sender_fault = sender_fault

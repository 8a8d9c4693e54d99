"""Tell an AWS failure that will pass (retry) from one that is the worker's own
configuration (credentials, permissions, a wrong resource), for every client."""

from __future__ import annotations

import asyncio
from typing import Final

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    InvalidConfigError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from worker.core.errors import ConfigurationFault, TransientError

# The caller's credentials or signature were refused: the same for every call and every
# message; the start-up check names the credential variables for them. (ExpiredToken
# here is an STS session, not a registration token: that one is ExpiredTokenException.)
CREDENTIAL_CODES: Final = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "InvalidAccessKeyId",
    }
)
# Credentials, permissions, missing resources, a wrong endpoint: retrying the same message
# cannot help, and the message is not to blame.
CONFIGURATION_CODES: Final = CREDENTIAL_CODES | {
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NotFound",
    "NotFoundException",
    "ResourceNotFoundException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    # The endpoint is not the service asked for (LocalStack answers 501 for an API it
    # does not emulate): a wrong AWS_ENDPOINT_URL_*, never a passing fault.
    "UnknownOperationException",
    "InvalidAction",
    "NotImplemented",
}


THROTTLING_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)

# The credential chain could not produce credentials (an expired SSO session, a role that
# cannot be assumed, a profile that does not exist): the worker's, never the message's.
CREDENTIAL_PROVIDER_ERRORS: Final = (
    NoCredentialsError,
    PartialCredentialsError,
    NoRegionError,
    CredentialRetrievalError,
    TokenRetrievalError,
    SSOTokenLoadError,
    UnauthorizedSSOTokenError,
    ProfileNotFound,
    InvalidConfigError,
)


def error_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "Unknown"))
    return type(error).__name__


def http_status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def classify_aws_error(error: BaseException) -> TransientError | ConfigurationFault | None:
    """The worker's view of an AWS call's failure, or None when it is not an AWS failure."""
    if isinstance(error, ClientError):
        code = error_code(error)
        if code in CONFIGURATION_CODES or http_status(error) in {401, 403, 501}:
            return ConfigurationFault(f"{code}: {describe(error)}")
        return TransientError(f"{code}: {describe(error)}")
    if isinstance(error, ParamValidationError):
        # Our own request is wrong: retrying cannot help and the message is not to blame.
        return ConfigurationFault(f"invalid request (a bug): {describe(error)}")
    if isinstance(error, CREDENTIAL_PROVIDER_ERRORS):
        return ConfigurationFault(describe(error))
    if isinstance(error, ConnectionError | HTTPClientError | BotoCoreError):
        return TransientError(f"{type(error).__name__}: {describe(error)}")
    if isinstance(error, TimeoutError | asyncio.TimeoutError | aiohttp.ClientError | OSError):
        return TransientError(f"{type(error).__name__}: {describe(error)}")
    return None


def describe_with_code(error: BaseException) -> str:
    """``Code: message`` for an AWS answer, else ``describe``: for a person deciding
    what to do about a call that failed."""
    if isinstance(error, ClientError):
        code = error_code(error) or "Unknown"
        message = describe(error) if error.response.get("Error", {}).get("Message") else ""
        return f"{code}: {message}" if message else code
    return describe(error)


def describe(error: BaseException, limit: int = 300) -> str:
    """A one-line error text, short enough for a message attribute or a log field."""
    if isinstance(error, ClientError):
        text = str(error.response.get("Error", {}).get("Message", "")) or str(error)
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())[:limit]

"""How ResolveCustomer and other AWS failures are classified: Rejected (dead-letter),
TransientError (retry), ConfigurationFault (pause, never blame the token).

The tables build real botocore and aiohttp exceptions; the end-to-end tests take them
from a real aiobotocore client talking to the ResolveCustomer emulator.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ProfileNotFound,
    ReadTimeoutError,
    TokenRetrievalError,
)

from worker.core.errors import (
    ApiDisabled,
    ConfigurationFault,
    DeadLetterReason,
    MalformedMessage,
    PublishError,
    RegworkerError,
    Rejected,
    TokenRefused,
    TransientError,
)
from worker.core.faults import classify_aws_error
from worker.core.flow_control import FlowController, Pacer
from worker.core.handler import may_be_its_own
from worker.core.resolver import Resolver, ResolveThrottled, classify_resolve_error
from worker.local.emulator import DEFAULT_PRODUCT_CODE, EmulatorConfig, running_emulator
from worker.local.sandbox import LocalService, free_port

if TYPE_CHECKING:
    from types_aiobotocore_meteringmarketplace import MarketplaceMeteringClient

REGION = "us-east-1"
NO_RETRIES = AioConfig(retries={"mode": "standard", "total_max_attempts": 1})
REJECTED_KEY = "AKIDREJECTEDCLASSIFY"


def client_error(code: str, status: int = 400, operation: str = "ResolveCustomer") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code}  happened\n here"},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "RequestId": "req-1",
                "HostId": "",
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            },
        },
        operation,
    )


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        ("InvalidTokenException", 400, DeadLetterReason.INVALID_TOKEN),
        ("ExpiredTokenException", 400, DeadLetterReason.EXPIRED_TOKEN),
    ],
)
def test_token_errors_are_rejections(code: str, status: int, reason: DeadLetterReason) -> None:
    failure = classify_resolve_error(client_error(code, status))
    assert type(failure) is TokenRefused  # a Rejected that says the API answered
    assert failure.reason is reason
    assert failure.detail == f"{code}: {code} happened here"  # one line, for a DLQ attribute


@pytest.mark.parametrize("code", ["ThrottlingException", "Throttling", "TooManyRequests"])
def test_throttling_is_a_transient_throttle(code: str) -> None:
    failure = classify_resolve_error(client_error(code))
    assert type(failure) is ResolveThrottled
    assert issubclass(ResolveThrottled, TransientError)  # retried, as every transient error
    assert str(failure) == f"{code}: {code} happened here"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("InternalServiceErrorException", 500),
        ("InternalFailure", 500),
        ("ServiceUnavailable", 503),
        ("SomethingNewException", 400),  # an error AWS may add later: retrying is safe
        ("ValidationException", 400),
    ],
)
def test_server_and_unknown_errors_are_transient(code: str, status: int) -> None:
    failure = classify_resolve_error(client_error(code, status))
    assert type(failure) is TransientError
    assert code in str(failure)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("UnrecognizedClientException", 400),
        ("AccessDeniedException", 400),
        ("InvalidSignatureException", 400),
        ("ExpiredToken", 400),  # an expired STS session: the worker's, not the buyer's
        ("SomethingForbidden", 403),
        ("SomethingUnauthorized", 401),
        # An endpoint that is not ResolveCustomer: LocalStack's answer for an API it does
        # not emulate, and an unknown target.
        ("InternalFailure", 501),
        ("UnknownOperationException", 400),
    ],
)
def test_credential_and_permission_errors_are_configuration_faults(code: str, status: int) -> None:
    failure = classify_resolve_error(client_error(code, status))
    assert type(failure) is ConfigurationFault
    assert code in str(failure)


def test_disabled_api_is_held_as_seller_wide_not_blamed_on_the_token() -> None:
    failure = classify_resolve_error(client_error("DisabledApiException"))
    assert type(failure) is ApiDisabled
    assert str(failure) == "DisabledApiException: DisabledApiException happened here"
    # Held as a configuration fault (the probe decides), never dead-lettered as it comes.
    assert issubclass(ApiDisabled, ConfigurationFault)
    assert not issubclass(ApiDisabled, Rejected)


def test_registration_expired_token_is_not_the_sts_expired_token() -> None:
    registration = classify_resolve_error(client_error("ExpiredTokenException"))
    session = classify_resolve_error(client_error("ExpiredToken"))
    assert type(registration) is TokenRefused
    assert registration.reason is DeadLetterReason.EXPIRED_TOKEN
    assert registration.detail == "ExpiredTokenException: ExpiredTokenException happened here"
    assert type(session) is ConfigurationFault
    assert str(session) == "ExpiredToken: ExpiredToken happened here"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), TransientError),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), TransientError),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), TransientError),
        (TimeoutError(), TransientError),  # asyncio.TimeoutError is this class since 3.11
        (aiohttp.ClientConnectionError("connection reset"), TransientError),
        (aiohttp.ServerDisconnectedError(), TransientError),
        (ConnectionResetError(104, "reset by peer"), TransientError),
        (NoCredentialsError(), ConfigurationFault),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_transport_and_credential_failures(
    error: Exception, expected: type[RegworkerError]
) -> None:
    for classify in (classify_resolve_error, classify_aws_error):
        failure = classify(error)
        assert type(failure) is expected, classify.__name__
        assert str(failure)


def test_a_token_botocore_refuses_to_send_is_malformed() -> None:
    error = ParamValidationError(report="Invalid type for parameter RegistrationToken")
    failure = classify_resolve_error(error)
    assert type(failure) is MalformedMessage
    assert failure.reason is DeadLetterReason.MALFORMED_MESSAGE
    assert failure.detail == "botocore refused the token as a RegistrationToken value"


def test_other_clients_errors() -> None:
    queue_gone = classify_aws_error(
        client_error("AWS.SimpleQueueService.NonExistentQueue", 400, "ReceiveMessage")
    )
    slow_down = classify_aws_error(client_error("ThrottlingException", 400, "PutEvents"))
    assert type(queue_gone) is ConfigurationFault
    assert type(slow_down) is TransientError
    # Token rejections mean something only for ResolveCustomer.
    assert type(classify_aws_error(client_error("InvalidTokenException"))) is TransientError


def test_a_non_aws_error_is_not_classified_by_faults_but_retried_by_the_resolver() -> None:
    assert classify_aws_error(ValueError("bug")) is None
    failure = classify_resolve_error(ValueError("bug"))
    assert type(failure) is TransientError
    assert str(failure) == "ValueError: bug"


# ---------------------------------------------------------------- against the emulator


@asynccontextmanager
async def metering_client(
    url: str, access_key: str = "testing"
) -> AsyncIterator[MarketplaceMeteringClient]:
    """A real aiobotocore ResolveCustomer client aimed at ``url``, no botocore retries."""
    async with get_session().create_client(
        "meteringmarketplace",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id=access_key,
        aws_secret_access_key="testing",
        config=NO_RETRIES,
    ) as client:
        yield client


@pytest.fixture
async def metering(emulator: LocalService) -> AsyncIterator[MarketplaceMeteringClient]:
    async with metering_client(emulator.url) as client:
        yield client


async def failure_of(client: MarketplaceMeteringClient, token: Any) -> RegworkerError:
    with pytest.raises((ClientError, ParamValidationError, EndpointConnectionError)) as caught:
        await client.resolve_customer(RegistrationToken=token)
    return classify_resolve_error(caught.value)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("invalid-x", DeadLetterReason.INVALID_TOKEN),
        ("expired-x", DeadLetterReason.EXPIRED_TOKEN),
    ],
)
async def test_emulated_token_errors_are_rejections(
    metering: MarketplaceMeteringClient, token: str, reason: DeadLetterReason
) -> None:
    failure = await failure_of(metering, token)
    assert type(failure) is TokenRefused
    assert failure.reason is reason
    assert failure.detail.startswith(f"{reason.value}Exception: ")


async def test_emulated_throttle_is_a_throttle(metering: MarketplaceMeteringClient) -> None:
    token = f"throttle-1-{uuid.uuid4()}"
    failure = await failure_of(metering, token)
    assert type(failure) is ResolveThrottled
    assert str(failure).startswith("ThrottlingException: ")
    answer = await metering.resolve_customer(RegistrationToken=token)  # once only
    assert answer["ProductCode"] == DEFAULT_PRODUCT_CODE


async def test_emulated_internal_error_is_transient(metering: MarketplaceMeteringClient) -> None:
    failure = await failure_of(metering, f"error-1-{uuid.uuid4()}")
    assert type(failure) is TransientError
    assert "InternalServiceErrorException" in str(failure)


async def test_a_token_of_the_wrong_type_never_leaves_the_client(
    metering: MarketplaceMeteringClient,
) -> None:
    failure = await failure_of(metering, 12345)
    assert type(failure) is MalformedMessage
    assert failure.reason is DeadLetterReason.MALFORMED_MESSAGE
    assert "12345" not in str(failure)  # the value (a token) never reaches a log line


async def test_rejected_credentials_are_a_configuration_fault() -> None:
    config = EmulatorConfig(reject_access_keys=frozenset({REJECTED_KEY}))
    async with (
        running_emulator(config) as url,
        metering_client(url, REJECTED_KEY) as client,
    ):
        failure = await failure_of(client, "good-token")
    assert type(failure) is ConfigurationFault
    assert "UnrecognizedClientException" in str(failure)


async def test_nothing_listening_is_transient() -> None:
    async with metering_client(f"http://127.0.0.1:{free_port()}") as client:
        failure = await failure_of(client, "good-token")
    assert type(failure) is TransientError
    assert "EndpointConnectionError" in str(failure)


# ---------------------------------------------------------------- Resolver.resolve


def resolver_for(client: MarketplaceMeteringClient, pacer: Pacer | None = None) -> Resolver:
    pacer = pacer or Pacer(FlowController(100, start_rate=100))
    return Resolver(client, pacer, retry_base=0.02, retry_max=0.1)


async def test_resolve_retries_internal_errors_until_it_succeeds(
    metering: MarketplaceMeteringClient,
) -> None:
    resolver = resolver_for(metering)
    customer = await resolver.resolve(f"error-2-{uuid.uuid4()}", budget=5.0)
    assert customer.product_code == DEFAULT_PRODUCT_CODE
    assert customer.customer_aws_account_id is not None
    assert customer.license_arn is not None
    assert resolver.retries == 2


async def test_resolve_gives_up_when_the_budget_is_spent(
    metering: MarketplaceMeteringClient,
) -> None:
    resolver = resolver_for(metering)
    started = time.monotonic()
    with pytest.raises(TransientError, match="InternalServiceErrorException"):
        await resolver.resolve(f"error-100-{uuid.uuid4()}", budget=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert resolver.retries >= 2  # it did retry in place before giving up


async def test_resolve_reports_every_answer_to_the_flow_controller(
    metering: MarketplaceMeteringClient,
) -> None:
    controller = FlowController(100, start_rate=100)
    resolver = resolver_for(metering, Pacer(controller))
    await resolver.resolve(f"throttle-3-{uuid.uuid4()}", budget=5.0)
    assert resolver.retries == 3
    # Every answer, throttles included, reached the flow controller; three throttles in
    # one young window are no reason to slow down yet.
    assert controller.throttled == 3
    assert controller.decreases == 0


async def test_resolve_does_not_retry_a_rejection(metering: MarketplaceMeteringClient) -> None:
    resolver = resolver_for(metering)
    with pytest.raises(Rejected) as caught:
        await resolver.resolve("expired-x", budget=5.0)
    assert caught.value.reason is DeadLetterReason.EXPIRED_TOKEN
    assert resolver.retries == 0


@pytest.mark.parametrize(
    "error",
    [
        CredentialRetrievalError(provider="assume-role", error_msg="role cannot be assumed"),
        TokenRetrievalError(provider="sso", error_msg="session expired"),
        ProfileNotFound(profile="missing"),
    ],
)
def test_credential_chain_failures_are_configuration_faults(error: Exception) -> None:
    """An expired SSO session or a role that cannot be assumed is the worker's fault:
    held, never retried as a passing error until the token is RetriesExhausted."""
    failure = classify_aws_error(error)
    assert type(failure) is ConfigurationFault
    assert str(failure) == str(error)


@pytest.mark.parametrize(
    ("error", "judged_by_the_probe"),
    [
        (PublishError("PublishBatch InvalidParameter: too long", sender_fault=True), True),
        (PublishError("PutEvents ThrottlingException: slow down"), False),  # the bus's
        (PublishError("PutEvents AccessDeniedException: KMS"), False),  # the worker's
        (ApiDisabled("DisabledApiException: disabled"), True),
        (ConfigurationFault("UnrecognizedClientException: bad key"), False),
        (TransientError("InternalServiceErrorException: every try failed"), True),
    ],
)
def test_which_failures_the_probe_judges(error: Exception, judged_by_the_probe: bool) -> None:
    """Only failures that may be the message's own are put to the probe (and, when the
    probe gets through, become the message's); the rest hold the worker until it works."""
    assert may_be_its_own(error) is judged_by_the_probe

"""Tests for the ResolveCustomer emulator, over real sockets.

Most tests talk to one emulator started as a real subprocess (``python -m worker
emulator --port 0``), with boto3, raw HTTP and the real AWS CLI; the async tests run
it in-process with ``running_emulator`` and an aiobotocore client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

from worker.cli import main
from worker.local.emulator import (
    DEFAULT_PRODUCT_CODE,
    FAULT_CODES,
    EmulatorConfig,
    EmulatorState,
    ErrorCode,
    InvalidFault,
    InvalidOption,
    decide,
    derive_customer,
    parse_fault,
    resolve,
    running_emulator,
    service_gate,
    token_fingerprint,
)
from worker.local.sandbox import clear_emulator_fault, emulator_fault, set_emulator_fault

if TYPE_CHECKING:
    from mypy_boto3_meteringmarketplace import MarketplaceMeteringClient
    from types_aiobotocore_meteringmarketplace import (
        MarketplaceMeteringClient as AioMeteringClient,
    )

REGION = "us-east-1"
# The fault switch's codes and the HTTP status each answers.
FAULT_STATUS = {
    "UnrecognizedClientException": 400,
    "AccessDeniedException": 400,
    "InternalServiceErrorException": 500,
    "ThrottlingException": 400,
    "DisabledApiException": 400,
}
REJECTED_KEY = "AKIDREJECTED0000"
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
AIO_NO_RETRIES = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})
LISTENING = re.compile(r"emulator listening on (http://127\.0\.0\.1:(\d+))\n")
CUSTOMER_ID = re.compile(r"[A-Za-z0-9]{13}")
ACCOUNT_ID = re.compile(r"\d{12}")
LICENSE_ARN = re.compile(r"arn:aws:license-manager::(\d{12}):license:l-[0-9a-f]{32}")


# ---------------------------------------------------------------- helpers and fixtures


def _env_without_aws() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may pick up real credentials, profiles or endpoints."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@dataclass
class EmulatorProcess:
    proc: subprocess.Popen[str]
    url: str
    port: int
    stderr_path: Path

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def start_emulator(workdir: Path, *options: str) -> EmulatorProcess:
    """Starts ``python -m worker emulator --port 0`` and reads the port from its first line."""
    workdir.mkdir(parents=True, exist_ok=True)
    stderr_path = workdir / "emulator.stderr"
    command = [sys.executable, "-m", "worker", "emulator", "--port", "0", *options]
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=_env_without_aws()
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline() if ready else ""
    found = LISTENING.fullmatch(line)
    if found is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"emulator did not start: stdout={line!r} stderr={stderr_path.read_text()!r}")
    return EmulatorProcess(proc, found[1], int(found[2]), stderr_path)


@pytest.fixture(scope="module")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    emulator = start_emulator(
        tmp_path_factory.mktemp("emulator"), "--reject-access-key", REJECTED_KEY
    )
    yield emulator
    assert emulator.stop() == 0, emulator.stderr()


@pytest.fixture
def url(emulator_process: EmulatorProcess) -> str:
    """The shared emulator's URL, with counters and per-token state reset for this test."""
    assert http("POST", f"{emulator_process.url}/_emulator/reset")[0] == 200
    return emulator_process.url


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One raw HTTP call: status, lower-cased headers, parsed JSON body."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=10) as response:
            status, raw_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, raw_headers, raw = error.code, error.headers, error.read()
    return status, {k.lower(): v for k, v in raw_headers.items()}, json.loads(raw)


def call_api(url: str, payload: object, target: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target is not None:
        headers["X-Amz-Target"] = target
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, _, parsed = http("POST", f"{url}/", body, headers)
    return status, parsed


def stats(url: str) -> dict[str, Any]:
    status, _, body = http("GET", f"{url}/_emulator/stats")
    assert status == 200
    assert isinstance(body, dict)
    return body


def metering(
    url: str, access_key: str = "testing", config: Config = NO_RETRIES
) -> MarketplaceMeteringClient:
    return boto3.client(
        "meteringmarketplace",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id=access_key,
        aws_secret_access_key="testing",
        config=config,
    )


def resolve_fields(client: MarketplaceMeteringClient, token: str) -> dict[str, str]:
    answer = client.resolve_customer(RegistrationToken=token)
    return {key: value for key, value in answer.items() if isinstance(value, str)}


def error_of(client: MarketplaceMeteringClient, token: str) -> ClientError:
    with pytest.raises(ClientError) as caught:
        client.resolve_customer(RegistrationToken=token)
    return caught.value


def sha_prefix(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- pure rules


def test_derive_customer_formats_and_determinism() -> None:
    first = derive_customer("tok-1", "prod")
    assert first == derive_customer("tok-1", "prod")
    assert CUSTOMER_ID.fullmatch(first["CustomerIdentifier"])
    assert ACCOUNT_ID.fullmatch(first["CustomerAWSAccountId"])
    arn = LICENSE_ARN.fullmatch(first["LicenseArn"])
    assert arn is not None
    assert arn[1] == first["CustomerAWSAccountId"]
    assert first["ProductCode"] == "prod"
    second = derive_customer("tok-2", "prod")
    for key in ("CustomerIdentifier", "CustomerAWSAccountId", "LicenseArn"):
        assert first[key] != second[key]


def test_decide_counted_prefixes_then_success() -> None:
    state = EmulatorState(EmulatorConfig())
    labels = [decide("throttle-2-a", state).label for _ in range(4)]
    assert labels == ["ThrottlingException", "ThrottlingException", "success", "success"]
    errors = [decide("error-1-a", state) for _ in range(2)]
    assert [(o.status, o.label) for o in errors] == [
        (500, "InternalServiceErrorException"),
        (200, "success"),
    ]
    # The count is per exact token.
    assert decide("throttle-2-b", state).label == "ThrottlingException"


@pytest.mark.parametrize(
    ("token", "label", "product", "delay"),
    [
        ("invalid-x", "InvalidTokenException", None, 0.0),
        ("expired-x", "ExpiredTokenException", None, 0.0),
        ("disabled-x", "DisabledApiException", None, 0.0),
        ("slow-250-x", "success", DEFAULT_PRODUCT_CODE, 0.25),
        ("slow-40", "success", DEFAULT_PRODUCT_CODE, 0.04),
        ("product-OTHER-x", "success", "OTHER", 0.0),
        ("product--x", "success", DEFAULT_PRODUCT_CODE, 0.0),
        ("throttle-x-1", "success", DEFAULT_PRODUCT_CODE, 0.0),
        ("throttle-0-x", "success", DEFAULT_PRODUCT_CODE, 0.0),
        ("error-" + "9" * 40, "success", DEFAULT_PRODUCT_CODE, 0.0),
        ("\ud800lone-surrogate", "InvalidTokenException", None, 0.0),
        ("<script>alert(1)</script>", "InvalidTokenException", None, 0.0),
    ],
)
def test_decide_prefix_rules(token: str, label: str, product: str | None, delay: float) -> None:
    outcome = decide(token, EmulatorState(EmulatorConfig()))
    assert outcome.label == label
    assert outcome.delay_s == pytest.approx(delay)
    assert outcome.body.get("ProductCode") == product
    if product is None:
        assert outcome.body["__type"] == label
        assert outcome.status == 400


def test_service_gate_token_bucket_and_faults() -> None:
    state = EmulatorState(EmulatorConfig(tps=2))
    state.reset(now=100.0)
    assert [service_gate(state, 100.0) for _ in range(2)] == [None, None]
    throttled = service_gate(state, 100.0)
    assert throttled is not None
    assert throttled.label == "ThrottlingException"
    assert service_gate(state, 100.5) is None  # 0.5 s at 2 TPS refills one call
    assert service_gate(state, 100.5) is not None

    faulty = EmulatorState(EmulatorConfig(fault_rate=1.0))
    # Service-wide rules come first: even a throttle- token's count is untouched.
    assert resolve("throttle-1-x", faulty, 0.0).label == "InternalServiceErrorException"
    assert not faulty.attempts


def test_fault_switch_gates_before_the_bucket_and_token_rules_until_it_expires() -> None:
    state = EmulatorState(EmulatorConfig(tps=1))
    state.reset(now=100.0)
    state.fault = parse_fault(b'{"code": "AccessDeniedException", "seconds": 10}', 100.0)
    for now in (100.0, 105.0, 109.999):
        faulted = resolve("throttle-1-x", state, now)
        assert (faulted.status, faulted.label) == (400, "AccessDeniedException")
        assert faulted.body["__type"] == "AccessDeniedException"
    # Neither the TPS bucket nor the throttle- token's count was touched.
    assert not state.attempts
    assert state.bucket is not None
    assert state.bucket.tokens == 1.0
    assert resolve("throttle-1-x", state, 110.0).label == "ThrottlingException"
    assert state.fault is None  # expired at 110.0 and cleared
    assert resolve("throttle-1-x", state, 111.0).label == "success"


def test_fault_switch_codes_and_reset() -> None:
    assert set(FAULT_CODES) == {ErrorCode(code) for code in FAULT_STATUS}
    state = EmulatorState(EmulatorConfig())
    state.fault = parse_fault(b'{"code": "ThrottlingException", "seconds": 0.5}', 0.0)
    assert state.fault.as_json(0.2) == {
        "code": "ThrottlingException",
        "status": 400,
        "message": "Rate exceeded.",
        "seconds": 0.5,
        "seconds_left": 0.3,
    }
    state.reset()
    assert state.fault is None
    with pytest.raises(InvalidFault, match="code must be one of"):
        parse_fault(b'{"code": "InvalidTokenException", "seconds": 1}', 0.0)


def test_config_rejects_out_of_range_values() -> None:
    with pytest.raises(InvalidOption, match="--fault-rate"):
        EmulatorConfig(fault_rate=float("nan"))
    with pytest.raises(InvalidOption, match="--latency-ms"):
        EmulatorConfig(latency_ms=-5)
    with pytest.raises(InvalidOption, match="--tps"):
        EmulatorConfig(tps=float("inf"))


def test_fingerprint_is_sha256_prefix() -> None:
    assert token_fingerprint("tok-1") == sha_prefix("tok-1")
    assert len(token_fingerprint("x")) == 12


# ---------------------------------------------------------------- boto3 over the wire


def test_ordinary_token_resolves_with_all_fields(url: str) -> None:
    client = metering(url)
    answer = client.resolve_customer(RegistrationToken="tok-1")
    meta = answer["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 200
    assert meta["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"
    assert uuid.UUID(meta["RequestId"]).version == 4
    assert answer["ProductCode"] == DEFAULT_PRODUCT_CODE
    assert CUSTOMER_ID.fullmatch(answer["CustomerIdentifier"])
    assert ACCOUNT_ID.fullmatch(answer["CustomerAWSAccountId"])
    assert LICENSE_ARN.fullmatch(answer["LicenseArn"])
    assert resolve_fields(client, "tok-1") == derive_customer("tok-1", DEFAULT_PRODUCT_CODE)
    assert resolve_fields(client, "tok-1") == resolve_fields(client, "tok-1")
    other = resolve_fields(client, "tok-2")
    assert other["CustomerIdentifier"] != answer["CustomerIdentifier"]
    assert other["LicenseArn"] != answer["LicenseArn"]


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("invalid-x", "InvalidTokenException"),
        ("expired-x", "ExpiredTokenException"),
        ("disabled-x", "DisabledApiException"),
    ],
)
def test_terminal_prefixes_map_to_modelled_errors(url: str, token: str, code: str) -> None:
    client = metering(url)
    error = error_of(client, token)
    assert error.response["Error"]["Code"] == code
    assert error.response["Error"]["Message"]
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # botocore also raises the modelled subclass, so `except client.exceptions.X` works.
    assert type(error) is getattr(client.exceptions, code)


def test_throttle_n_fails_n_times_then_succeeds(url: str) -> None:
    client = metering(url)
    for _ in range(2):
        error = error_of(client, "throttle-2-abc")
        assert error.response["Error"]["Code"] == "ThrottlingException"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert isinstance(error, client.exceptions.ThrottlingException)
    assert resolve_fields(client, "throttle-2-abc")["ProductCode"] == DEFAULT_PRODUCT_CODE
    assert stats(url)["by_outcome"] == {"ThrottlingException": 2, "success": 1}


def test_error_n_answers_http_500_then_succeeds(url: str) -> None:
    client = metering(url)
    error = error_of(client, "error-1-abc")
    assert error.response["Error"]["Code"] == "InternalServiceErrorException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert client.resolve_customer(RegistrationToken="error-1-abc")["ProductCode"]


def test_botocore_default_retries_absorb_throttling(url: str) -> None:
    """Without a retry cap botocore retries ThrottlingException itself: 3 calls, 1 answer."""
    client = metering(url, config=Config(retries={"mode": "standard"}))
    assert client.resolve_customer(RegistrationToken="throttle-2-r")["ProductCode"]
    assert stats(url)["by_token_sha256_prefix"] == {sha_prefix("throttle-2-r"): 3}


def test_slow_prefix_delays_the_answer(url: str) -> None:
    client = metering(url)
    started = time.monotonic()
    client.resolve_customer(RegistrationToken="slow-300-abc")
    assert time.monotonic() - started >= 0.3


def test_product_prefix_sets_product_code(url: str) -> None:
    answer = metering(url).resolve_customer(RegistrationToken="product-otherprod-abc")
    assert answer["ProductCode"] == "otherprod"


def test_rejected_access_key_is_unrecognized_client(url: str) -> None:
    error = error_of(metering(url, access_key=REJECTED_KEY), "tok-1")
    assert error.response["Error"]["Code"] == "UnrecognizedClientException"
    assert error.response["Error"]["Message"] == (
        "The security token included in the request is invalid."
    )
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert metering(url, access_key="AKIDACCEPTED").resolve_customer(RegistrationToken="tok-1")


def test_stats_count_what_the_test_did(url: str) -> None:
    client = metering(url)
    for token in ("tok-a", "tok-a", "tok-b"):
        client.resolve_customer(RegistrationToken=token)
    for token in ("invalid-a", "expired-a", "error-1-a"):
        error_of(client, token)
    error_of(metering(url, access_key=REJECTED_KEY), "tok-a")
    assert call_api(url, {"RegistrationToken": "x"}, target="Nope.Op")[0] == 400

    status, _, body = http("GET", f"{url}/_emulator/stats")
    assert status == 200
    assert body == {
        "calls": 8,
        "by_outcome": {
            "success": 3,
            "InvalidTokenException": 1,
            "ExpiredTokenException": 1,
            "InternalServiceErrorException": 1,
            "UnrecognizedClientException": 1,
            "UnknownOperationException": 1,
        },
        "by_token_sha256_prefix": {
            sha_prefix("tok-a"): 2,
            sha_prefix("tok-b"): 1,
            sha_prefix("invalid-a"): 1,
            sha_prefix("expired-a"): 1,
            sha_prefix("error-1-a"): 1,
        },
    }
    assert "tok-a" not in json.dumps(body)


def test_reset_clears_counters_and_per_token_state(url: str) -> None:
    client = metering(url)
    assert error_of(client, "throttle-1-r").response["Error"]["Code"] == "ThrottlingException"
    client.resolve_customer(RegistrationToken="throttle-1-r")
    assert http("POST", f"{url}/_emulator/reset")[2] == {"status": "reset"}
    assert stats(url) == {"calls": 0, "by_outcome": {}, "by_token_sha256_prefix": {}}
    assert error_of(client, "throttle-1-r").response["Error"]["Code"] == "ThrottlingException"


def test_health(url: str) -> None:
    status, _, body = http("GET", f"{url}/_emulator/health")
    assert (status, body) == (200, {"status": "ok"})


# ---------------------------------------------------------------- raw wire protocol


def test_raw_success_headers(url: str) -> None:
    status, headers, body = http(
        "POST",
        f"{url}/",
        json.dumps({"RegistrationToken": "tok-1"}).encode(),
        {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AWSMPMeteringService.ResolveCustomer",
        },
    )
    assert status == 200
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert uuid.UUID(headers["x-amzn-requestid"]).version == 4
    assert body == derive_customer("tok-1", DEFAULT_PRODUCT_CODE)


@pytest.mark.parametrize(
    ("payload", "target", "error"),
    [
        (
            {"RegistrationToken": "t"},
            "AWSMPMeteringService.MeterUsage",
            "UnknownOperationException",
        ),
        ({"RegistrationToken": "t"}, None, "UnknownOperationException"),
        ({"RegistrationToken": ""}, "AWSMPMeteringService.ResolveCustomer", "ValidationException"),
        ({}, "AWSMPMeteringService.ResolveCustomer", "ValidationException"),
        ({"RegistrationToken": 7}, "AWSMPMeteringService.ResolveCustomer", "ValidationException"),
        (["t"], "AWSMPMeteringService.ResolveCustomer", "ValidationException"),
        (b"{not json", "AWSMPMeteringService.ResolveCustomer", "SerializationException"),
        (b"\xff\xfe", "AWSMPMeteringService.ResolveCustomer", "SerializationException"),
    ],
)
def test_raw_bad_requests(url: str, payload: object, target: str | None, error: str) -> None:
    status, body = call_api(url, payload, target)
    assert status == 400
    assert body["__type"] == error
    assert body["message"]


# ---------------------------------------------------------------- the fault switch


def faults(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, Any]:
    status, headers, parsed = http(method, f"{url}/_emulator/faults", body)
    assert headers["content-type"].startswith("application/json")
    return status, parsed


@pytest.mark.parametrize(("code", "http_status"), sorted(FAULT_STATUS.items()))
def test_fault_answers_its_code_for_every_token(url: str, code: str, http_status: int) -> None:
    client = metering(url)
    assert client.resolve_customer(RegistrationToken="tok-before")["ProductCode"]
    fault = set_emulator_fault(url, code, 600)
    assert fault["code"] == code
    assert fault["status"] == http_status
    assert fault["seconds"] == 600
    assert 599 < fault["seconds_left"] <= 600
    tokens = ("tok-before", "tok-1", "product-x-1", "slow-10-x", "throttle-1-x", "invalid-x")
    for token in tokens:
        error = error_of(client, token)
        assert error.response["Error"]["Code"] == code
        assert error.response["Error"]["Message"]
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == http_status
    # Even a call whose body is malformed gets the fault; another operation does not.
    status, body = call_api(url, b"{not json", "AWSMPMeteringService.ResolveCustomer")
    assert (status, body["__type"]) == (http_status, code)
    assert call_api(url, {"RegistrationToken": "t"}, "Nope.Op")[1]["__type"] == (
        "UnknownOperationException"
    )
    counted = stats(url)
    assert counted["by_outcome"] == {
        "success": 1,
        code: len(tokens) + 1,
        "UnknownOperationException": 1,
    }
    assert counted["by_token_sha256_prefix"][sha_prefix("tok-before")] == 2
    assert faults(url)[1]["fault"]["code"] == code

    clear_emulator_fault(url)
    # The per-token rules were not touched while the fault held.
    assert error_of(client, "throttle-1-x").response["Error"]["Code"] == "ThrottlingException"
    assert client.resolve_customer(RegistrationToken="tok-1")["ProductCode"]


def test_fault_expires_by_itself(url: str) -> None:
    client = metering(url)
    fault = set_emulator_fault(url, "UnrecognizedClientException", 0.5)
    set_at = time.monotonic()  # after the emulator started the fault's clock
    assert fault["seconds"] == 0.5
    assert error_of(client, "tok-1").response["Error"]["Code"] == "UnrecognizedClientException"
    active = emulator_fault(url)
    assert active is not None
    assert 0 < active["seconds_left"] <= 0.5
    time.sleep(max(0.0, set_at + 0.5 - time.monotonic()) + 0.05)
    assert emulator_fault(url) is None
    assert client.resolve_customer(RegistrationToken="tok-1")["ProductCode"]
    assert stats(url)["by_outcome"] == {"UnrecognizedClientException": 1, "success": 1}


def test_fault_delete_clears_it_at_once(url: str) -> None:
    client = metering(url)
    set_emulator_fault(url, "InternalServiceErrorException", 600)
    # A new POST replaces the active fault.
    set_emulator_fault(url, "AccessDeniedException", 600)
    assert error_of(client, "tok-1").response["Error"]["Code"] == "AccessDeniedException"
    assert faults(url, "DELETE") == (200, {"fault": None})
    assert faults(url) == (200, {"fault": None})
    assert client.resolve_customer(RegistrationToken="tok-1")["ProductCode"]
    assert faults(url, "DELETE") == (200, {"fault": None})  # nothing to clear: still 200
    clear_emulator_fault(url)


def test_reset_clears_the_fault(url: str) -> None:
    client = metering(url)
    status, body = faults(url, "POST", b'{"code": "DisabledApiException", "seconds": 600}')
    assert status == 200
    assert body["fault"]["code"] == "DisabledApiException"
    assert error_of(client, "tok-1").response["Error"]["Code"] == "DisabledApiException"
    assert http("POST", f"{url}/_emulator/reset")[2] == {"status": "reset"}
    assert emulator_fault(url) is None
    assert client.resolve_customer(RegistrationToken="tok-1")["ProductCode"]


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b'{"code": "InvalidTokenException", "seconds": 5}', "code must be one of"),
        (b'{"code": "Nope", "seconds": 5}', "code must be one of"),
        (b'{"code": "unrecognizedclientexception", "seconds": 5}', "code must be one of"),
        (b'{"seconds": 5}', "code must be one of"),
        (b'{"code": 7, "seconds": 5}', "code must be one of"),
        (b'{"code": "ThrottlingException"}', "seconds must be"),
        (b'{"code": "ThrottlingException", "seconds": 0}', "seconds must be"),
        (b'{"code": "ThrottlingException", "seconds": -1}', "seconds must be"),
        (b'{"code": "ThrottlingException", "seconds": 86401}', "seconds must be"),
        (b'{"code": "ThrottlingException", "seconds": "600"}', "seconds must be"),
        (b'{"code": "ThrottlingException", "seconds": true}', "seconds must be"),
        (b'{"code": "ThrottlingException", "seconds": NaN}', "seconds must be"),
        (b'{"code": "ThrottlingException", "seconds": Infinity}', "seconds must be"),
        (b'{"code": "ThrottlingException", "seconds": 5, "status": 503}', "unknown fields"),
        (b'["ThrottlingException", 5]', "JSON object"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_fault_bad_bodies_answer_400(url: str, body: bytes, complaint: str) -> None:
    status, answer = faults(url, "POST", body)
    assert status == 400
    assert answer["error"] == "InvalidFault"
    assert complaint in answer["message"]
    assert emulator_fault(url) is None
    assert metering(url).resolve_customer(RegistrationToken="tok-1")["ProductCode"]


def test_fault_helper_raises_on_a_refused_fault(url: str) -> None:
    with pytest.raises(ValueError, match="code must be one of"):
        set_emulator_fault(url, "ExpiredTokenException", 5)
    with pytest.raises(ValueError, match="seconds must be"):
        set_emulator_fault(url, "ThrottlingException", 86_400.5)
    assert set_emulator_fault(url, "ThrottlingException", 86_400)["seconds"] == 86_400


# ---------------------------------------------------------------- the CLI process


def test_fault_rate_one_always_faults_and_sigint_exits_0(tmp_path: Path) -> None:
    emulator = start_emulator(tmp_path, "--fault-rate", "1.0", "--seed", "3")
    try:
        client = metering(emulator.url)
        for token in ("tok-1", "tok-2", "product-x-1"):
            error = error_of(client, token)
            assert error.response["Error"]["Code"] == "InternalServiceErrorException"
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert stats(emulator.url)["by_outcome"] == {"InternalServiceErrorException": 3}
    finally:
        assert emulator.stop(signal.SIGINT) == 0
    assert emulator.stderr() == ""


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--fault-rate", "1.5"),
        ("--fault-rate", "-0.1"),
        ("--fault-rate", "nan"),
        ("--latency-ms", "-1"),
        ("--tps", "-2"),
        ("--port", "70000"),
    ],
)
def test_invalid_option_exits_2_with_one_line(option: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker", "emulator", option, value],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env_without_aws(),
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith(f"regworker emulator: invalid {option}: ")
    assert done.stderr.count("\n") == 1


def test_port_in_use_exits_1(emulator_process: EmulatorProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker", "emulator", "--port", str(emulator_process.port)],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env_without_aws(),
    )
    assert done.returncode == 1
    assert done.stderr.startswith("regworker emulator: cannot listen on 127.0.0.1:")


def test_help_has_description_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulator", "--help"]) == 0
    text = capsys.readouterr().out
    assert "ResolveCustomer" in text
    assert (
        "aws meteringmarketplace resolve-customer --registration-token abc"
        " --endpoint-url http://127.0.0.1:8642 --region us-east-1"
    ) in text
    for option in ("--tps", "--fault-rate", "--reject-access-key", "--latency-ms"):
        assert option in text
    for endpoint in ("POST /_emulator/faults", "GET /_emulator/faults", "DELETE /_emulator/faults"):
        assert endpoint in text


# ---------------------------------------------------------------- the real AWS CLI


@pytest.fixture(scope="module")
def aws_cli() -> str:
    path = shutil.which("aws")
    if path is None:
        pytest.skip("AWS CLI `aws` not on PATH (the Makefile installs awscli into its own venv)")
    probe = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=60, env=_env_without_aws()
    )
    if probe.returncode != 0:
        pytest.skip(f"`aws --version` failed: {(probe.stderr or probe.stdout).strip()}")
    return path


def run_aws(aws_cli: str, url: str, token: str, home: Path) -> subprocess.CompletedProcess[str]:
    (home / "config").write_text("")
    (home / "credentials").write_text("")
    env = _env_without_aws() | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_MAX_ATTEMPTS": "1",
    }
    command = [
        aws_cli,
        "meteringmarketplace",
        "resolve-customer",
        "--registration-token",
        token,
        "--endpoint-url",
        url,
        "--region",
        REGION,
        "--output",
        "json",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_aws_cli_answer_matches_boto3(aws_cli: str, url: str, tmp_path: Path) -> None:
    done = run_aws(aws_cli, url, "tok-1", tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == resolve_fields(metering(url), "tok-1")


def test_aws_cli_reports_invalid_token(aws_cli: str, url: str, tmp_path: Path) -> None:
    done = run_aws(aws_cli, url, "invalid-x", tmp_path)
    assert done.returncode in (254, 255)  # v2 answers 254 for service errors, v1 255
    assert "InvalidTokenException" in done.stderr
    assert stats(url)["by_outcome"] == {"InvalidTokenException": 1}


# ---------------------------------------------------------------- in-process, aiobotocore


@asynccontextmanager
async def aio_metering(url: str) -> AsyncIterator[AioMeteringClient]:
    session = get_session()
    async with session.create_client(
        "meteringmarketplace",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=AIO_NO_RETRIES,
    ) as client:
        yield client


async def aio_label(client: AioMeteringClient, token: str) -> str:
    try:
        await client.resolve_customer(RegistrationToken=token)
    except ClientError as error:
        return error.response["Error"]["Code"]
    return "success"


async def test_aiobotocore_in_process_and_no_raw_tokens_in_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="worker.local.emulator")
    config = EmulatorConfig(product_code="inprocprod")
    async with running_emulator(config) as url, aio_metering(url) as client:
        assert re.fullmatch(r"http://127\.0\.0\.1:[1-9]\d*", url)
        answer = await client.resolve_customer(RegistrationToken="tok-secret-1")
        fields = {k: v for k, v in answer.items() if isinstance(v, str)}
        assert fields == derive_customer("tok-secret-1", "inprocprod")
        assert await aio_label(client, "expired-secret-2") == "ExpiredTokenException"
    assert token_fingerprint("tok-secret-1") in caplog.text
    assert token_fingerprint("expired-secret-2") in caplog.text
    assert "secret" not in caplog.text


async def test_tps_throttles_a_burst() -> None:
    async with running_emulator(EmulatorConfig(tps=2)) as url, aio_metering(url) as client:
        labels = await asyncio.gather(*(aio_label(client, f"tok-{i}") for i in range(10)))
        # Capacity 2; a slow machine may refill one more during the burst.
        assert labels.count("success") in (2, 3)
        assert labels.count("ThrottlingException") == 10 - labels.count("success")
        await asyncio.sleep(0.6)
        assert await aio_label(client, "tok-after") == "success"


async def test_fault_rate_draws_follow_the_seed() -> None:
    async def labels(seed: int) -> list[str]:
        config = EmulatorConfig(fault_rate=0.5, seed=seed)
        async with running_emulator(config) as url, aio_metering(url) as client:
            return [await aio_label(client, f"tok-{i}") for i in range(20)]

    draws = random.Random(7)  # same generator the emulator uses
    expected = [
        "InternalServiceErrorException" if draws.random() < 0.5 else "success" for _ in range(20)
    ]
    assert await labels(7) == expected
    assert set(expected) == {"success", "InternalServiceErrorException"}
    assert await labels(8) != expected


async def test_latency_and_slow_calls_do_not_block_the_loop() -> None:
    async with running_emulator(EmulatorConfig(latency_ms=100)) as url, aio_metering(url) as client:
        started = time.monotonic()
        slow = asyncio.create_task(aio_label(client, "slow-600-x"))
        assert await aio_label(client, "tok-fast") == "success"
        fast_done = time.monotonic() - started
        assert await slow == "success"
        slow_done = time.monotonic() - started
    assert 0.1 <= fast_done < 0.5
    assert slow_done >= 0.7


async def test_fault_switch_through_aiobotocore_raises_client_error() -> None:
    async with running_emulator(EmulatorConfig()) as url, aio_metering(url) as client:
        # urllib blocks: off the loop, which serves the emulator.
        await asyncio.to_thread(set_emulator_fault, url, "UnrecognizedClientException", 600)
        with pytest.raises(ClientError) as caught:
            await client.resolve_customer(RegistrationToken="tok-1")
        error = caught.value.response
        assert error["Error"]["Code"] == "UnrecognizedClientException"
        assert error["Error"]["Message"] == (
            "The security token included in the request is invalid."
        )
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        await asyncio.to_thread(set_emulator_fault, url, "InternalServiceErrorException", 600)
        assert await aio_label(client, "tok-1") == "InternalServiceErrorException"
        await asyncio.to_thread(clear_emulator_fault, url)
        assert await aio_label(client, "tok-1") == "success"

"""The start-up check, as a user meets it: `regworker run` as a process on the local
services. A misconfigured dependency stops it before the first receive with one line
that names what to fix, and exit 2; an answer that may pass is retried first."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from mypy_boto3_sqs.client import SQSClient

from tests.support import one_line, run_until_empty, send_all, tag
from worker.core.startup_check import refused_for_good
from worker.local.sandbox import (
    LocalService,
    emulator_server,
    free_port,
    set_emulator_fault,
)
from worker.ops.provision import Resources


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
def test_a_queue_that_does_not_exist(
    resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    missing = resources.queue_url.rsplit("/", 1)[0] + f"/missing-{tag()}"
    line = one_line(run_until_empty(resources, aws_env, tmp_path, REGWORKER_QUEUE_URL=missing))
    assert line.startswith("regworker run: REGWORKER_QUEUE_URL: no such queue")
    assert missing in line


@pytest.mark.parametrize("resources", ["eventbridge"], indirect=True)
def test_a_bus_that_does_not_exist(
    resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    result = run_until_empty(
        resources, aws_env, tmp_path, REGWORKER_EVENT_BUS_NAME=f"nobus-{tag()}"
    )
    assert "REGWORKER_EVENT_BUS_NAME: no such EventBridge bus" in one_line(result)


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
def test_missing_credentials(resources: Resources, aws_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in aws_env.items() if not k.startswith("AWS_ACCESS_KEY_ID")}
    env = {k: v for k, v in env.items() if k != "AWS_SECRET_ACCESS_KEY"}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    line = one_line(run_until_empty(resources, env, tmp_path))
    assert "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID" in line


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
def test_an_endpoint_where_nothing_listens(
    resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_until_empty(resources, {**aws_env, "AWS_ENDPOINT_URL_SQS": dead}, tmp_path)
    line = one_line(result)
    assert line.startswith("regworker run: AWS_ENDPOINT_URL_SQS: queue ")
    assert f"did not answer at {dead}" in line


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
def test_a_metering_endpoint_that_is_not_resolve_customer(
    resources: Resources, aws_env: dict[str, str], moto: LocalService, tmp_path: Path
) -> None:
    """AWS_ENDPOINT_URL_MARKETPLACE_METERING forgotten: ResolveCustomer goes to the
    endpoint that serves everything else, which does not serve it."""
    env = {k: v for k, v in aws_env.items() if k != "AWS_ENDPOINT_URL_MARKETPLACE_METERING"}
    line = one_line(run_until_empty(resources, env, tmp_path))
    assert line.startswith("regworker run: AWS_ENDPOINT_URL_MARKETPLACE_METERING: ")
    assert moto.url in line


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
def test_refused_credentials_name_the_service(
    resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    with emulator_server(["--reject-access-key", aws_env["AWS_ACCESS_KEY_ID"]]) as strict:
        env = {**aws_env, "AWS_ENDPOINT_URL_MARKETPLACE_METERING": strict.url}
        line = one_line(run_until_empty(resources, env, tmp_path))
    assert "AWS credentials refused by ResolveCustomer (UnrecognizedClientException)" in line


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
def test_throttling_at_start_is_retried_not_reported(
    sqs: SQSClient, resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    token = f"start-{tag()}"
    send_all(sqs, resources.queue_url, [token])
    with emulator_server() as emulator:
        env = {**aws_env, "AWS_ENDPOINT_URL_MARKETPLACE_METERING": emulator.url}
        set_emulator_fault(emulator.url, "ThrottlingException", 2.0)
        result = run_until_empty(resources, env, tmp_path, REGWORKER_STARTUP_CHECK_SECONDS="20")
    assert result.returncode == 0, result.stderr
    assert "published=1" in result.stderr.splitlines()[-1]


@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    """A TCP endpoint that takes connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
def test_an_endpoint_that_never_answers_is_reported_within_the_check_time(
    resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """Each try gets what is left of REGWORKER_STARTUP_CHECK_SECONDS, not the client's
    own read timeout (35 s for SQS) three times over."""
    with silent_endpoint() as silent:
        started = time.monotonic()
        result = run_until_empty(resources, {**aws_env, "AWS_ENDPOINT_URL_SQS": silent}, tmp_path)
        took = time.monotonic() - started
    assert "AWS_ENDPOINT_URL_SQS" in one_line(result)
    assert took < 15


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
def test_a_seller_wide_disabled_api_is_named_at_start(
    resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    with emulator_server() as emulator:
        set_emulator_fault(emulator.url, "DisabledApiException", 60)
        env = {**aws_env, "AWS_ENDPOINT_URL_MARKETPLACE_METERING": emulator.url}
        line = one_line(run_until_empty(resources, env, tmp_path))
    assert "ResolveCustomer answers DisabledApiException" in line


def test_a_refusal_at_start_is_no_passing_fault() -> None:
    """A topic ARN of another region is refused with InvalidParameter (400): at start-up
    that is the setting's fault and is reported at once, not retried as an outage."""

    def answer(code: str) -> Any:
        return {
            "Error": {"Code": code, "Message": code},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    refused = ClientError(answer("InvalidParameter"), "GetTopicAttributes")
    throttled = ClientError(answer("Throttling"), "GetTopicAttributes")
    assert refused_for_good(refused)
    assert not refused_for_good(throttled)

"""The reference landing page, served on a free port in-process, posting real forms to
it and reading what it put on a moto queue."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from examples.landing import LandingConfig, create_app
from tests.support import drain, unique_name
from worker.core.events import token_ref
from worker.core.request import parse_body
from worker.local.sandbox import free_port

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

REGION = "us-east-1"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def queue_url(sqs: SQSClient) -> str:
    return sqs.create_queue(QueueName=unique_name("landing"))["QueueUrl"]


@asynccontextmanager
async def serving(config: LandingConfig) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def post(
    url: str, data: str | bytes, content_type: str = FORM
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            url, data=data, headers={"Content-Type": content_type}, allow_redirects=False
        ) as response,
    ):
        return response.status, dict(response.headers), await response.text()


async def test_post_redirects_at_once_and_queues_the_token(sqs: SQSClient, queue_url: str) -> None:
    token = f"tok+landing/{uuid.uuid4().hex[:8]}="
    form = (
        "x-amzn-marketplace-token="
        + token.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        + "&x-amzn-marketplace-offer-type=free-trial"
    )
    config = LandingConfig(queue_url, welcome_url="/welcome", region=REGION)

    async with serving(config) as base:
        started = time.monotonic()
        status, headers, _ = await post(f"{base}/", form)
        elapsed = time.monotonic() - started
        welcome_status, _, welcome_page = await get(f"{base}{headers['Location']}")

    assert status == 303
    assert headers["Cache-Control"] == "no-store"  # the redirect answers a token's POST
    location = urlsplit(headers["Location"])
    assert location.path == "/welcome"
    [correlation_id] = parse_qs(location.query)["correlation_id"]
    assert len(correlation_id) == 32
    assert elapsed < 1.0  # one SendMessage, no waiting on the worker
    assert welcome_status == 200
    assert "setting up your account" in welcome_page
    assert correlation_id in welcome_page

    [message] = await asyncio.to_thread(drain, sqs, queue_url, 1)
    request = parse_body(message["Body"])
    assert (request.token, request.offer_type, request.correlation_id) == (
        token,
        "free-trial",
        correlation_id,
    )
    assert request.body_format == "json"
    assert request.received_at is not None


async def get(url: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        return response.status, dict(response.headers), await response.text()


async def test_welcome_url_with_its_own_query(sqs: SQSClient, queue_url: str) -> None:
    config = LandingConfig(queue_url, welcome_url="https://seller.example/setup?lang=en")
    async with serving(config) as base:
        status, headers, _ = await post(f"{base}/", "x-amzn-marketplace-token=tok-q-1")
    assert status == 303
    location = urlsplit(headers["Location"])
    assert (location.netloc, location.path) == ("seller.example", "/setup")
    query = parse_qs(location.query)
    assert query["lang"] == ["en"]
    assert len(query["correlation_id"][0]) == 32
    [message] = await asyncio.to_thread(drain, sqs, queue_url, 1)
    assert parse_body(message["Body"]).token == "tok-q-1"


@pytest.mark.parametrize(
    ("form", "content_type", "status", "text"),
    [
        ("x-amzn-marketplace-offer-type=free-trial", FORM, 400, "Registration link incomplete"),
        ("x-amzn-marketplace-token=", FORM, 400, "Registration link incomplete"),
        ("x-amzn-marketplace-token=bad+token", FORM, 400, "Registration link not valid"),
        ("x-amzn-marketplace-token=a&x-amzn-marketplace-token=b", FORM, 400, "not valid"),
        ('{"x-amzn-marketplace-token": "t"}', "application/json", 415, "Unsupported"),
    ],
)
async def test_bad_posts_get_a_short_page_and_queue_nothing(
    sqs: SQSClient, queue_url: str, form: str, content_type: str, status: int, text: str
) -> None:
    async with serving(LandingConfig(queue_url)) as base:
        answer, headers, page = await post(f"{base}/", form, content_type)
    assert answer == status
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-store"
    assert text in page
    posted = parse_qs(form).get("x-amzn-marketplace-token", [""])[0]
    assert len(posted) < 3 or posted not in page  # the page never repeats the token
    assert await asyncio.to_thread(drain, sqs, queue_url) == []


async def test_oversized_body_is_refused(sqs: SQSClient, queue_url: str) -> None:
    async with serving(LandingConfig(queue_url)) as base:
        status, headers, _ = await post(f"{base}/", "x-amzn-marketplace-token=" + "a" * 20_000)
    assert status == 413
    assert headers["Cache-Control"] == "no-store"  # aiohttp's own answer too
    assert await asyncio.to_thread(drain, sqs, queue_url) == []


async def test_queue_down_answers_503_and_logs_no_token(
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")  # nothing there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    token = f"tok-down-{uuid.uuid4().hex[:8]}"
    queue_url = "http://127.0.0.1:9/000000000000/registrations"

    with caplog.at_level(logging.INFO, logger="examples.landing"):
        async with serving(LandingConfig(queue_url, region=REGION)) as base:
            status, headers, page = await post(
                f"{base}/",
                f"x-amzn-marketplace-token={token}&x-amzn-marketplace-offer-type=free-trial",
            )

    assert status == 503
    assert headers["Retry-After"] == "5"
    assert headers["Cache-Control"] == "no-store"  # the page holds the token
    assert "Please try again" in page
    # The retry button posts the same form again, to this browser only.
    assert f'name="x-amzn-marketplace-token" value="{token}"' in page
    assert 'name="x-amzn-marketplace-offer-type" value="free-trial"' in page
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    line = record.getMessage()
    assert "enqueue failed" in line
    assert f"token_sha256={token_ref(token)}" in line
    assert token not in line
    assert all(token not in r.getMessage() for r in caplog.records)


async def test_client_is_opened_once_for_the_app_life(
    sqs: SQSClient, queue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Startup opens the client; after that, requests never build another one."""
    async with serving(LandingConfig(queue_url, region=REGION)) as base:
        first, _, _ = await post(f"{base}/", "x-amzn-marketplace-token=tok-once-1")
        # Point new clients at nothing: the app's open client must not care.
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
        results = await asyncio.gather(
            *(post(f"{base}/", f"x-amzn-marketplace-token=tok-once-{n}") for n in range(2, 12))
        )
    assert first == 303
    assert [status for status, _, _ in results] == [303] * 10
    messages = await asyncio.to_thread(drain, sqs, queue_url, 11)
    assert {parse_body(m["Body"]).token for m in messages} == {
        f"tok-once-{n}" for n in range(1, 12)
    }

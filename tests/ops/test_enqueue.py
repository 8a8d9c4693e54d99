"""The web tier's enqueue API and `regworker enqueue`, against moto server over real
sockets; partial batch failures come from a small SQS stand-in served here."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web
from botocore.config import Config

from tests.support import drain, make_settings, run_command, schema_validator, tag, unique_name
from worker.cli.enqueue import TokenLine
from worker.cli.output import ProgressBar
from worker.core.events import token_ref, token_sha256
from worker.core.request import parse_body
from worker.core.service import run_worker
from worker.ops.enqueue import (
    ATTEMPTS,
    CALL_BOUND_SECONDS,
    READ_TIMEOUT,
    AsyncEnqueuer,
    EnqueueFailed,
    Enqueuer,
    InvalidRequest,
    MissingToken,
    body_from_form,
    build_body,
)
from worker.ops.enqueue_requests import _Pending
from worker.ops.provision import Resources

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

REGION = "us-east-1"


@pytest.fixture
def queue_url(sqs: SQSClient) -> str:
    return sqs.create_queue(QueueName=unique_name("enq"))["QueueUrl"]


@pytest.fixture
def fifo_queue_url(sqs: SQSClient) -> str:
    name = unique_name("enq") + ".fifo"
    return sqs.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})["QueueUrl"]


def bodies_by_token(sqs: SQSClient, url: str, expected: int | None = None) -> dict[str, Any]:
    return {parse_body(m["Body"]).token: m for m in drain(sqs, url, expected)}


# ---------------------------------------------------------------- bodies


def test_build_body_is_the_schema_envelope_and_parses_back() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=2)))
    body = build_body(
        "tok+/=abc",
        "free-trial",
        correlation_id="web-42",
        metadata={"plan": "gold"},
        received_at=moment,
    )

    document = json.loads(body)
    schema_validator("registration-request").validate(document)
    assert document == {
        "registration_token": "tok+/=abc",
        "offer_type": "free-trial",
        "correlation_id": "web-42",
        "received_at": "2024-05-01T12:00:00.250Z",
        "metadata": {"plan": "gold"},
    }
    request = parse_body(body)
    assert (request.token, request.offer_type, request.correlation_id) == (
        "tok+/=abc",
        "free-trial",
        "web-42",
    )
    assert request.received_at == moment
    assert dict(request.metadata) == {"plan": "gold"}


def test_build_body_defaults_a_fresh_correlation_id_and_now() -> None:
    before = datetime.now(UTC)
    first, second = json.loads(build_body("tok-1")), json.loads(build_body("tok-1"))

    schema_validator("registration-request").validate(first)
    assert set(first) == {"registration_token", "correlation_id", "received_at"}
    assert len(first["correlation_id"]) == 32
    int(first["correlation_id"], 16)
    assert first["correlation_id"] != second["correlation_id"]
    received = datetime.fromisoformat(first["received_at"])
    assert first["received_at"].endswith("Z")
    assert before - timedelta(seconds=1) <= received <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"token": "has a space"}, "printable ASCII"),
        ({"token": ""}, "missing"),
        ({"token": "x" * 2049}, "over 2048"),
        ({"token": "tok-ok", "offer_type": "free trial!"}, "offer_type"),
        ({"token": "tok-ok", "metadata": {"bad key!": "v"}}, "metadata keys"),
        ({"token": "tok-ok", "metadata": {"k": 5}}, "metadata"),
        ({"token": "tok-ok", "received_at": datetime(2024, 1, 1)}, "time zone"),
    ],
)
def test_build_body_rejects_in_the_web_tier(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidRequest, match=expected) as caught:
        build_body(**kwargs)
    assert isinstance(caught.value, ValueError)
    if kwargs["token"]:
        assert kwargs["token"] not in str(caught.value)


@pytest.mark.parametrize(
    "form",
    [
        "x-amzn-marketplace-token=tok%2Bform%2F1%3D&x-amzn-marketplace-offer-type=free-trial",
        b"x-amzn-marketplace-offer-type=free-trial&x-amzn-marketplace-token=tok%2Bform%2F1%3D",
        {"x-amzn-marketplace-token": "tok+form/1=", "x-amzn-marketplace-offer-type": "free-trial"},
    ],
    ids=["str", "bytes", "mapping"],
)
def test_body_from_form(form: str | bytes | dict[str, str]) -> None:
    request = parse_body(body_from_form(form, correlation_id="c-1"))
    assert (request.token, request.offer_type, request.correlation_id) == (
        "tok+form/1=",
        "free-trial",
        "c-1",
    )
    assert request.body_format == "json"


def test_body_from_form_without_offer_type_or_with_an_empty_one() -> None:
    for form in (
        "x-amzn-marketplace-token=t1",
        "x-amzn-marketplace-token=t1&x-amzn-marketplace-offer-type=",
    ):
        request = parse_body(body_from_form(form))
        assert (request.token, request.offer_type) == ("t1", None)


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ("", MissingToken),
        ("other=1", MissingToken),
        ("x-amzn-marketplace-token=", MissingToken),
        ({}, MissingToken),
        ("x-amzn-marketplace-token=a&x-amzn-marketplace-token=b", InvalidRequest),
        ("x-amzn-marketplace-token=tok+with+spaces", InvalidRequest),  # '+' was not encoded
        (b"x-amzn-marketplace-token=\xff\xfe", InvalidRequest),
    ],
)
def test_body_from_form_rejects(form: str | bytes | dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        body_from_form(form)


# ---------------------------------------------------------------- Enqueuer, sync


def test_enqueue_sends_the_envelope(sqs: SQSClient, queue_url: str) -> None:
    enqueuer = Enqueuer(queue_url, region=REGION)
    token = f"tok-{tag()}"

    message_id = enqueuer.enqueue(token, "free-trial", correlation_id="web-1")

    [message] = drain(sqs, queue_url, 1)
    assert message["MessageId"] == message_id
    request = parse_body(message["Body"])
    assert (request.token, request.offer_type, request.correlation_id) == (
        token,
        "free-trial",
        "web-1",
    )


def test_enqueue_form_with_a_given_client(sqs: SQSClient, queue_url: str) -> None:
    enqueuer = Enqueuer(queue_url, sqs_client=sqs)
    message_id = enqueuer.enqueue_form(b"x-amzn-marketplace-token=tok%2B1", metadata={"a": "b"})

    [message] = drain(sqs, queue_url, 1)
    assert message["MessageId"] == message_id
    request = parse_body(message["Body"])
    assert (request.token, dict(request.metadata)) == ("tok+1", {"a": "b"})


def test_enqueue_refuses_a_bad_token_before_sending(sqs: SQSClient, queue_url: str) -> None:
    with pytest.raises(InvalidRequest):
        Enqueuer(queue_url, sqs_client=sqs).enqueue("bad token")
    assert drain(sqs, queue_url) == []


def test_enqueue_to_a_missing_queue_raises_enqueue_failed(sqs: SQSClient, queue_url: str) -> None:
    sqs.delete_queue(QueueUrl=queue_url)
    with pytest.raises(EnqueueFailed, match=r"NonExistentQueue|QueueDoesNotExist") as caught:
        Enqueuer(queue_url, sqs_client=sqs).enqueue("tok-secret-1")
    assert "tok-secret-1" not in str(caught.value)


def test_fifo_groups_by_token_and_drops_duplicates(sqs: SQSClient, fifo_queue_url: str) -> None:
    enqueuer = Enqueuer(fifo_queue_url, sqs_client=sqs)
    first, second = f"tok-a-{tag()}", f"tok-b-{tag()}"

    enqueuer.enqueue(first)
    enqueuer.enqueue(first, correlation_id="another-request")  # same token, dropped
    report = enqueuer.enqueue_many([second, first, second])

    assert len(report.sent) == 3
    assert not report.failed
    messages = bodies_by_token(sqs, fifo_queue_url, 2)
    assert set(messages) == {first, second}
    for token, message in messages.items():
        assert message["Attributes"]["MessageGroupId"] == token_ref(token)
        assert message["Attributes"]["MessageDeduplicationId"] == token_sha256(token)


def test_enqueue_many_batches_checks_and_reports_progress(sqs: SQSClient, queue_url: str) -> None:
    t = tag()
    tokens = [f"tok-{t}-{n:02d}" for n in range(25)]
    tokens[3] = "bad token"
    tokens[17] = ""
    steps: list[int] = []

    report = Enqueuer(queue_url, sqs_client=sqs).enqueue_many(
        tokens, progress=steps.append, offer_type="free-trial"
    )

    assert sum(steps) == 25
    assert steps == [11, 11, 3]  # the two bad tokens settle in the batch they would join
    assert [item.index for item in report.failed] == [3, 17]
    assert report.failed[0].token_ref == token_ref("bad token")
    assert report.failed[0].reason.startswith("invalid: ")
    assert [item.index for item in report.sent] == [n for n in range(25) if n not in (3, 17)]
    assert not report.ok
    messages = bodies_by_token(sqs, queue_url, 23)
    assert set(messages) == {tokens[n] for n in range(25) if n not in (3, 17)}
    assert {item.message_id for item in report.sent} == {m["MessageId"] for m in messages.values()}
    assert {parse_body(m["Body"]).offer_type for m in messages.values()} == {"free-trial"}


RESERVED = [
    {"dlq_reason": "ExpiredToken"},
    {"source": "web-1", "dlq_source_message_id": "forged"},
    {"DLQ_Reason": "ExpiredToken"},
    {"replay_count": "99"},
    {"Replay_Count": "99"},
]


def test_enqueue_sends_the_senders_attributes(sqs: SQSClient, queue_url: str) -> None:
    enqueuer = Enqueuer(queue_url, sqs_client=sqs)
    token = f"tok-{tag()}"
    enqueuer.enqueue(token, attributes={"source": "web-1", "dlq": "a name, not the prefix"})
    [message] = drain(sqs, queue_url, 1)
    assert {name: value["StringValue"] for name, value in message["MessageAttributes"].items()} == {
        "source": "web-1",
        "dlq": "a name, not the prefix",
    }


@pytest.mark.parametrize("attributes", RESERVED)
def test_enqueue_refuses_reserved_attribute_names(
    sqs: SQSClient, queue_url: str, attributes: dict[str, str]
) -> None:
    """dlq_* and replay_count are what `regworker dlq` reads off a dead letter: a sender
    that could set them could make replay skip or refuse a good token."""
    enqueuer = Enqueuer(queue_url, sqs_client=sqs)
    with pytest.raises(InvalidRequest, match="reserved name") as caught:
        enqueuer.enqueue(f"tok-{tag()}", attributes=attributes)
    assert "dlq_" in str(caught.value)
    assert "replay_count" in str(caught.value)
    with pytest.raises(InvalidRequest, match="reserved name"):
        enqueuer.enqueue_form(f"x-amzn-marketplace-token=tok-{tag()}", attributes=attributes)
    assert drain(sqs, queue_url) == []


async def test_async_enqueue_refuses_reserved_attribute_names(
    sqs: SQSClient, queue_url: str
) -> None:
    token = f"tok-{tag()}"
    async with AsyncEnqueuer(queue_url, region=REGION) as enqueuer:
        for attributes in RESERVED:
            with pytest.raises(InvalidRequest, match="reserved name"):
                await enqueuer.enqueue(token, attributes=attributes)
            with pytest.raises(InvalidRequest, match="reserved name"):
                await enqueuer.enqueue_form(
                    f"x-amzn-marketplace-token={token}", attributes=attributes
                )
        await enqueuer.enqueue(token, attributes={"source": "web-2"})
    [message] = await asyncio.to_thread(drain, sqs, queue_url, 1)
    assert message["MessageAttributes"]["source"]["StringValue"] == "web-2"


def test_reprs_of_what_holds_a_token_do_not_show_it() -> None:
    token = "SECRETtokenForARepr-" + tag() * 4
    pending = _Pending(3, token, build_body(token))
    line = TokenLine("line 7", token)
    for shown in (repr(pending), repr(line), repr([pending, line])):
        assert token[:8] not in shown
    assert "line 7" in repr(line)


# ---------------------------------------------------------------- AsyncEnqueuer


async def test_async_enqueuer_opens_its_own_client(sqs: SQSClient, queue_url: str) -> None:
    token = f"tok-{tag()}"
    async with AsyncEnqueuer(queue_url, region=REGION) as enqueuer:
        message_id = await enqueuer.enqueue(token, "free-trial")
        form_id = await enqueuer.enqueue_form(f"x-amzn-marketplace-token={token}-form")
        report = await enqueuer.enqueue_many([f"{token}-{n}" for n in range(12)])
    with pytest.raises(RuntimeError, match="async with"):
        await enqueuer.enqueue(token)

    assert report.ok
    assert len(report.sent) == 12
    messages = await asyncio.to_thread(bodies_by_token, sqs, queue_url, 14)
    assert messages[token]["MessageId"] == message_id
    assert messages[f"{token}-form"]["MessageId"] == form_id
    assert parse_body(messages[token]["Body"]).offer_type == "free-trial"
    assert len(messages) == 14


async def test_async_enqueuer_with_a_given_client(
    sqs: SQSClient, fifo_queue_url: str, aws_env: dict[str, str]
) -> None:
    token = f"tok-{tag()}"
    async with get_session().create_client("sqs", region_name=REGION) as client:
        enqueuer = AsyncEnqueuer(fifo_queue_url, sqs_client=client)
        await enqueuer.enqueue(token)
        await enqueuer.enqueue(token)
        async with enqueuer:  # a given client is not closed by the block
            pass
        await enqueuer.enqueue(f"{token}-2")
    messages = await asyncio.to_thread(bodies_by_token, sqs, fifo_queue_url, 2)
    assert set(messages) == {token, f"{token}-2"}
    assert messages[token]["Attributes"]["MessageGroupId"] == token_ref(token)


async def test_async_enqueue_failure_is_enqueue_failed(aws_env: dict[str, str]) -> None:
    dead = "http://127.0.0.1:9/000000000000/gone"
    config = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=1)
    async with get_session().create_client(
        "sqs", region_name=REGION, endpoint_url="http://127.0.0.1:9", config=config
    ) as client:
        with pytest.raises(EnqueueFailed, match="SendMessage failed"):
            await AsyncEnqueuer(dead, sqs_client=client).enqueue("tok-x")


async def test_enqueued_tokens_flow_through_the_worker(
    sqs: SQSClient, resources: Resources
) -> None:
    """The envelope is what the worker consumes: its fields reach the published event."""
    token = f"tok-{tag()}"
    async with AsyncEnqueuer(resources.queue_url, region=REGION) as enqueuer:
        await enqueuer.enqueue(token, "free-trial", correlation_id="web-7", metadata={"p": "1"})

    report = await run_worker(make_settings(resources), until_empty=True)

    assert report.tally.outcomes["published"] == 1
    [tapped] = await asyncio.to_thread(drain, sqs, resources.tap_queue_url, 1)
    envelope = json.loads(tapped["Body"])
    event = envelope.get("detail", envelope)
    assert event["token_sha256"] == token_sha256(token)
    assert (event["offer_type"], event["correlation_id"], event["metadata"]) == (
        "free-trial",
        "web-7",
        {"p": "1"},
    )


# ---------------------------------------------------------------- partial batch failures


class FlakySqs:
    """Answers SendMessageBatch over SQS's JSON protocol: entries whose body holds
    ``flaky`` fail (retryable) on their first try, ``sick`` on every try, ``poison``
    always fails as the sender's fault; ``down`` fails the whole call with a 503 (which
    botocore retries), ``gone`` with QueueDoesNotExist (which it does not)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.seen: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        entries = payload["Entries"]
        self.calls.append([parse_body(e["MessageBody"]).token for e in entries])
        if any("down" in e["MessageBody"] for e in entries):
            error = {"__type": "com.amazonaws.sqs#ServiceUnavailable", "message": "down"}
            return web.json_response(error, status=503, content_type="application/x-amz-json-1.0")
        if any("gone" in e["MessageBody"] for e in entries):
            error = {"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "gone"}
            return web.json_response(error, status=400, content_type="application/x-amz-json-1.0")
        successful, failed = [], []
        for entry in entries:
            token = parse_body(entry["MessageBody"]).token
            if "poison" in token:
                failed.append(
                    {"Id": entry["Id"], "SenderFault": True, "Code": "InvalidMessageContents"}
                )
            elif "sick" in token or ("flaky" in token and token not in self.seen):
                self.seen.add(token)
                failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"})
            else:
                digest = hashlib.md5(entry["MessageBody"].encode()).hexdigest()
                successful.append(
                    {"Id": entry["Id"], "MessageId": f"m-{token}", "MD5OfMessageBody": digest}
                )
        answer = {"Successful": successful, "Failed": failed}
        return web.json_response(answer, content_type="application/x-amz-json-1.0")


@asynccontextmanager
async def flaky_sqs() -> AsyncIterator[tuple[FlakySqs, str]]:
    fake = FlakySqs()
    app = web.Application()
    app.router.add_post("/", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield fake, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.mark.usefixtures("dummy_credentials")
async def test_failed_entries_are_retried_and_poison_reported() -> None:
    tokens = ["ok-1", "flaky-1", "poison-1", "ok-2", "flaky-2"]
    async with flaky_sqs() as (fake, url):
        config = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})
        async with get_session().create_client(
            "sqs", region_name=REGION, endpoint_url=url, config=config
        ) as client:
            report = await AsyncEnqueuer(f"{url}/000000000000/q", client).enqueue_many(tokens)

    assert fake.calls == [tokens, ["flaky-1", "flaky-2"]]
    assert {(s.index, s.message_id) for s in report.sent} == {
        (0, "m-ok-1"),
        (1, "m-flaky-1"),
        (3, "m-ok-2"),
        (4, "m-flaky-2"),
    }
    [poison] = report.failed
    assert (poison.index, poison.token_ref) == (2, token_ref("poison-1"))
    assert poison.reason.startswith("InvalidMessageContents")


@pytest.mark.usefixtures("dummy_credentials")
async def test_entries_failing_every_try_are_sent_attempts_times() -> None:
    """The entry retries stay within the bound of one call: ATTEMPTS sends at most."""
    async with flaky_sqs() as (fake, url):
        config = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})
        async with get_session().create_client(
            "sqs", region_name=REGION, endpoint_url=url, config=config
        ) as client:
            enqueuer = AsyncEnqueuer(f"{url}/000000000000/q", client)
            report = await enqueuer.enqueue_many(["ok-1", "sick-1"])

    assert fake.calls == [["ok-1", "sick-1"]] + [["sick-1"]] * (ATTEMPTS - 1)
    assert [(s.index, s.message_id) for s in report.sent] == [(0, "m-ok-1")]
    assert [(f.index, f.reason) for f in report.failed] == [(1, "InternalError: ")]


@pytest.mark.usefixtures("dummy_credentials")
async def test_a_failing_call_is_retried_then_every_entry_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the client Enqueuer builds, botocore's retries are the only ones: ATTEMPTS
    calls in all, then every entry of the batch is reported."""
    async with flaky_sqs() as (fake, url):
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        enqueuer = Enqueuer(f"{url}/000000000000/q", region=REGION)
        report = await asyncio.to_thread(enqueuer.enqueue_many, ["down-1", "ok-1"])

    assert len(fake.calls) == ATTEMPTS  # botocore's first try and its retry
    assert not report.sent
    assert [(f.index, f.reason) for f in report.failed] == [
        (0, "ServiceUnavailable: down"),
        (1, "ServiceUnavailable: down"),
    ]


@pytest.mark.usefixtures("dummy_credentials")
async def test_a_call_that_can_never_succeed_is_not_retried() -> None:
    async with flaky_sqs() as (fake, url):
        client = boto3.session.Session().client(
            "sqs", region_name=REGION, endpoint_url=url, config=Config(retries={"mode": "standard"})
        )
        enqueuer = Enqueuer(f"{url}/000000000000/q", sqs_client=client)
        report = await asyncio.to_thread(enqueuer.enqueue_many, ["gone-1", "ok-1"])

    assert len(fake.calls) == 1
    assert not report.sent
    assert [(f.index, f.reason) for f in report.failed] == [
        (0, "QueueDoesNotExist: gone"),
        (1, "QueueDoesNotExist: gone"),
    ]


# ---------------------------------------------------------------- the web path's bound

REFUSING_ENDPOINT = "http://127.0.0.1:9"  # nothing listens on the discard port


@asynccontextmanager
async def stalling_endpoint() -> AsyncIterator[tuple[str, list[int]]]:
    """A real socket that accepts connections and reads requests but never answers;
    yields its URL and a list that counts the connections accepted."""
    accepted: list[int] = []
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        held.append(writer)
        with suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}", accepted
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def timed_failures(url: str) -> tuple[float, float]:
    """Seconds until Enqueuer and AsyncEnqueuer, with the clients they build, raise
    EnqueueFailed for a token sent to ``url``."""
    queue_url = f"{url}/000000000000/q"
    started = time.monotonic()
    with pytest.raises(EnqueueFailed, match="SendMessage failed") as caught:
        await asyncio.to_thread(Enqueuer(queue_url, region=REGION).enqueue, "tok-secret-web")
    sync_seconds = time.monotonic() - started
    assert "tok-secret-web" not in str(caught.value)
    async with AsyncEnqueuer(queue_url, region=REGION) as enqueuer:
        started = time.monotonic()
        with pytest.raises(EnqueueFailed, match="SendMessage failed"):
            await enqueuer.enqueue_form("x-amzn-marketplace-token=tok-secret-web")
        async_seconds = time.monotonic() - started
    return sync_seconds, async_seconds


@pytest.mark.usefixtures("dummy_credentials")
async def test_the_web_path_gives_up_within_its_bound_when_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", REFUSING_ENDPOINT)
    for seconds in await timed_failures(REFUSING_ENDPOINT):
        assert seconds < CALL_BOUND_SECONDS


@pytest.mark.usefixtures("dummy_credentials")
async def test_the_web_path_gives_up_within_its_bound_when_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that takes the request and never answers: each attempt ends at the read
    timeout, and after ATTEMPTS of them the buyer's request gets its 503."""
    assert CALL_BOUND_SECONDS <= 6
    async with stalling_endpoint() as (url, accepted):
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        timings = await timed_failures(url)
    for seconds in timings:
        assert ATTEMPTS * READ_TIMEOUT <= seconds < CALL_BOUND_SECONDS
    assert len(accepted) == 2 * ATTEMPTS  # a fresh connection for every attempt


# ---------------------------------------------------------------- regworker enqueue


@pytest.mark.usefixtures("aws_env")
def test_cli_sends_arguments(
    sqs: SQSClient, queue_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    t = tag()
    code, out, err = run_command(
        capsys, "enqueue", "--queue-url", queue_url, f"tok-{t}-1", f"tok-{t}-2"
    )

    assert (code, out, err) == (0, "sent 2, failed 0\n", "")
    assert set(bodies_by_token(sqs, queue_url, 2)) == {f"tok-{t}-1", f"tok-{t}-2"}


@pytest.mark.usefixtures("aws_env")
def test_cli_file_skips_comments_and_reports_failures_without_tokens(
    sqs: SQSClient,
    queue_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = tag()
    path = tmp_path / "tokens.txt"
    path.write_text(f"# a comment\ntok-{t}-1\n\n   \nbad token {t}\n  tok-{t}-2  \n")
    monkeypatch.setenv("REGWORKER_QUEUE_URL", queue_url)

    code, out, err = run_command(
        capsys, "enqueue", "--file", str(path), "--offer-type", "free-trial"
    )

    assert code == 1
    assert out == "sent 2, failed 1\n"
    ref = token_ref(f"bad token {t}")
    assert err.startswith(f"regworker enqueue: line 5 (token {ref}): invalid: ")
    assert t not in out + err
    messages = bodies_by_token(sqs, queue_url, 2)
    assert set(messages) == {f"tok-{t}-1", f"tok-{t}-2"}
    assert {parse_body(m["Body"]).offer_type for m in messages.values()} == {"free-trial"}


@pytest.mark.usefixtures("aws_env")
def test_cli_reads_stdin_and_prints_json(
    sqs: SQSClient,
    queue_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = tag()
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"tok-{t}-1\n#skip\ninvalid token\n"))

    code, out, err = run_command(
        capsys, "enqueue", "--queue-url", queue_url, "--file", "-", "--json"
    )

    assert (code, err) == (1, "")
    report = json.loads(out)
    assert (report["queue_url"], report["sent"], report["failed"]) == (queue_url, 1, 1)
    [sent] = report["messages"]
    assert sent["where"] == "line 1"
    assert sent["token_sha256_prefix"] == token_ref(f"tok-{t}-1")
    [failure] = report["failures"]
    assert failure["where"] == "line 3"
    assert failure["token_sha256_prefix"] == token_ref("invalid token")
    assert t not in out
    assert "invalid token" not in out
    [message] = drain(sqs, queue_url, 1)
    assert message["MessageId"] == sent["message_id"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["tok-1"], "no queue URL"),
        (["--queue-url", "sqs/q", "tok-1"], "http://"),
        (["--queue-url", "http://127.0.0.1:9/q"], "no tokens"),
        (["--queue-url", "http://127.0.0.1:9/q", "--file", "/nonexistent/x"], "cannot read"),
        (["--queue-url", "http://127.0.0.1:9/q", "--file", "-", "tok-1"], "not both"),
        (["--queue-url", "http://127.0.0.1:9/q", "--offer-type", "a b", "tok-1"], "--offer-type"),
    ],
)
def test_cli_usage_errors(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_command(capsys, "enqueue", *args)
    assert (code, out) == (2, "")
    assert expected in err
    assert err.count("\n") == 1
    assert "tok-1" not in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_in_place() -> None:
    stream = Terminal()
    with ProgressBar(40, stream, threshold=0) as bar:
        bar.advance(10)
        bar.advance(30)
    drawn = stream.getvalue()
    assert "10/40" in drawn
    assert drawn.index("10/40") < drawn.index("40/40")
    assert "\n" in drawn[drawn.rindex("40/40") :]  # the finished bar stays on its line


@pytest.mark.usefixtures("aws_env")
def test_cli_progress_bar_only_on_a_terminal(
    sqs: SQSClient, queue_url: str, tmp_path: Path
) -> None:
    t = tag()
    path = tmp_path / "tokens.txt"
    path.write_text("".join(f"tok-{t}-{n}\n" for n in range(60)))
    command = [
        sys.executable,
        "-m",
        "worker",
        "enqueue",
        "--queue-url",
        queue_url,
        "--file",
        str(path),
    ]

    on_terminal = run_with_terminal_stderr(command)
    piped = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert on_terminal.returncode == 0
    assert piped.returncode == 0
    assert "━" in on_terminal.stderr  # rich's bar
    assert "60/60" in on_terminal.stderr
    assert piped.stderr == ""
    assert piped.stdout == on_terminal.stdout == "sent 60, failed 0\n"
    assert len(drain(sqs, queue_url, 120)) == 120


def run_with_terminal_stderr(command: list[str]) -> subprocess.CompletedProcess[str]:
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=terminal, text=True, env=dict(os.environ)
    ) as process:
        os.close(terminal)
        chunks = list(_read_all(controller))
        stdout = process.stdout.read() if process.stdout else ""
        process.wait(timeout=60)
    os.close(controller)
    return subprocess.CompletedProcess(
        command, process.returncode, stdout, b"".join(chunks).decode()
    )


def _read_all(descriptor: int) -> Iterator[bytes]:
    while True:
        ready, _, _ = select.select([descriptor], [], [], 60)
        if not ready:
            return
        with suppress(OSError):  # EIO once the child has closed the terminal
            chunk = os.read(descriptor, 4096)
            if chunk:
                yield chunk
                continue
        return

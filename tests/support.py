"""Helpers shared by test modules, one definition each (fixtures live in conftest.py).

No test module imports from conftest, and none imports another test module: what two
modules share is here.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mypy_boto3_sqs.client import SQSClient

from worker.aws.sqs_wire import drain as drain  # one 'read and delete a whole queue'
from worker.cli import main
from worker.core.events import event_id_for, token_sha256
from worker.core.service import run_worker
from worker.core.settings import Settings, Sink
from worker.local.sandbox import clean_environ
from worker.ops.provision import Resources

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
REGION = "us-east-1"


def tag() -> str:
    """A short unique suffix, so tests sharing one emulator or queue never collide."""
    return uuid.uuid4().hex[:8]


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def send_all(sqs: SQSClient, queue_url: str, bodies: Sequence[str], **extra: Any) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body, **extra)


def stop_after(seconds: float) -> asyncio.Event:
    """An event set ``seconds`` from now: a worker's ``stop``."""
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return stop


def regworker(
    args: Sequence[str], env: dict[str, str], cwd: Path, *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`regworker ARGS` as a process (``python -m worker``), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_until_empty(
    resources: Resources, env: dict[str, str], cwd: Path, *, timeout: float = 60, **settings: str
) -> subprocess.CompletedProcess[str]:
    """`regworker run --until-empty` as a process on ``resources``, start-up check kept short."""
    environ = {
        **clean_environ(),
        **env,
        **resources.settings_env(),
        "REGWORKER_WAIT_TIME_SECONDS": "1",
        "REGWORKER_STARTUP_CHECK_SECONDS": "2",
        "REGWORKER_HTTP_PORT": "0",
        **settings,
    }
    return regworker(["run", "--until-empty"], environ, cwd, timeout=timeout)


def run_command(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``regworker ARGV...`` in this process: its exit code, stdout and stderr."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The process printed exactly one line, and no log line or traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("regworker run: ")
    return lines[0]


def make_settings(resources: Resources, **overrides: Any) -> Settings:
    """Settings for a fast test run: short polls, short backoffs."""
    values: dict[str, Any] = {
        "queue_url": resources.queue_url,
        "dlq_url": resources.dlq_url,
        "sink": resources.sink,
        "event_bus_name": resources.event_bus_name or "default",
        "topic_arn": resources.topic_arn,
        "event_source": resources.event_source,
        "max_receives": resources.max_receives,
        "wait_time_seconds": 1,
        "visibility_timeout_seconds": 10,
        "resolve_budget_seconds": 1.5,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.3,
        "requeue_base_seconds": 1,
        "requeue_max_seconds": 2,
        "resolve_rate_limit": 200.0,
        # Above the default 4/s, so a retry's turn comes within the short budget above;
        # the ramp from the default start is tests/core/test_flow_control.py's and the bench's.
        "resolve_start_rate": 10.0,
        "publish_linger_seconds": 0.02,
        "shutdown_grace_seconds": 5,
        "fault_probe_max_seconds": 1,
        "startup_check_seconds": 3,
        "http_port": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def event_of(tap_message: Any, sink: Sink) -> dict[str, Any]:
    """The CustomerRegistered event inside a message read from the tap queue."""
    envelope: dict[str, Any] = json.loads(tap_message["Body"])
    if sink is Sink.EVENTBRIDGE:
        assert envelope["detail-type"] == "CustomerRegistered"
        detail: dict[str, Any] = envelope["detail"]
        return detail
    return envelope


def events_by_token(
    published: Sequence[dict[str, Any]], tokens: Iterable[str], product_code: str
) -> dict[str, dict[str, Any]]:
    """The CustomerRegistered events by token hash, checked: each valid against its
    schema, exactly one per token of ``tokens``, with the token's event_id and
    ``product_code``, and never the token itself."""
    events = {event["token_sha256"]: event for event in published}
    validator = schema_validator("customer-registered")
    for event in events.values():
        validator.validate(event)
    assert set(events) == {token_sha256(token) for token in tokens}
    for token in tokens:
        event = events[token_sha256(token)]
        assert token not in json.dumps(event)
        assert event["event_id"] == event_id_for(token)
        assert event["product_code"] == product_code
    return events


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def dead_letter_document(message: Any) -> dict[str, Any]:
    """A DLQ message as schemas/dead-letter.schema.json describes it."""
    attributes = {
        name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()
    }
    return {"body": message["Body"], "attributes": attributes}


def original_body(attributes: dict[str, str], body: str, candidates: Sequence[str]) -> str:
    """The body a dead letter was cut from (``dlq_body_truncated``), else ``body``."""
    if "dlq_body_truncated" not in attributes:
        return body
    size = int(attributes["dlq_body_truncated"])
    original = next(b for b in candidates if len(b.encode()) == size)
    assert original.startswith(body)
    return original


# Ugly bodies and the reason each is dead-lettered with.
HOSTILE: dict[str, str] = {
    # SQS itself refuses an empty body, so the emptiest a message can be is blank.
    "   \n\t  ": "MalformedMessage",
    "x" * (256 * 1024 - 64): "MalformedMessage",  # near SQS's size cap
    # Invalid UTF-8, percent-encoded in a form post: decodes to U+FFFD.
    "x-amzn-marketplace-token=%FF%FE%80abc": "MalformedMessage",
    '{"registration_token": 12345}': "MalformedMessage",
    '{"registration_token": ["a", "b"]}': "MalformedMessage",
    '{"registration_token": "ok", "metadata": "not an object"}': "MalformedMessage",
    '{"registration_token": "ok", "offer_type": {"x": 1}}': "MalformedMessage",
    '{"registration_token": null}': "MalformedMessage",
    "[1, 2, 3]": "MalformedMessage",
    '"just a json string"': "MalformedMessage",
    "A" * 10_000: "MalformedMessage",  # a 10 KB token
    "tok\tcontrol\rchars": "MalformedMessage",
    '{"registration_token": "a\\u0001b"}': "MalformedMessage",
    "x-amzn-marketplace-token=a&x-amzn-marketplace-token=b": "MalformedMessage",
    "x-amzn-marketplace-token=a&x-amzn-marketplace-offer-type=x&x-amzn-marketplace-offer-type=y": (
        "MalformedMessage"
    ),
    "1' OR '1'='1'; DROP TABLE customers; --": "MalformedMessage",
    "{" * 50_000: "MalformedMessage",
    "toké": "MalformedMessage",
    # Printable ASCII without spaces looks like a token to the parser; AWS (and the
    # emulator) answer it as an invalid token.
    "<script>alert(1)</script>": "InvalidToken",
    "';DROP/**/TABLE/**/x;--": "InvalidToken",
}


# ------------------------------------------------- scenarios run on moto and on LocalStack

EMULATOR_PRODUCT = "regworkeremulator00000001"


def dlq_by_body(sqs: SQSClient, resources: Resources) -> dict[str, dict[str, Any]]:
    documents = [dead_letter_document(m) for m in drain(sqs, resources.dlq_url)]
    validator = schema_validator("dead-letter")
    for document in documents:
        validator.validate(document)
    return {document["body"]: document["attributes"] for document in documents}


def body_shapes(t: str) -> dict[str, str]:
    """A good token in each body shape the worker reads (plain, form post, JSON
    envelope), keyed by the token each carries."""
    return {
        f"tok-plain-{t}": f"tok-plain-{t}",
        f"tok+form/{t}=": f"x-amzn-marketplace-token=tok%2Bform%2F{t}%3D"
        "&x-amzn-marketplace-offer-type=free-trial",
        f"tok-json-{t}": json.dumps(
            {
                "registration_token": f"tok-json-{t}",
                "correlation_id": f"corr-{t}",
                "metadata": {"plan": "gold"},
            }
        ),
    }


async def every_outcome(sqs: SQSClient, resources: Resources) -> None:
    """One real run of every outcome through the wire: good tokens (plain, form post,
    JSON, retried in place after throttles and 5xx, slow), and each dead-letter reason.
    The outcome matrix case by case is tests/core/test_handler.py's."""
    t = tag()
    good = {
        **body_shapes(t),
        f"throttle-2-{t}": f"throttle-2-{t}",  # throttled twice, then resolves in place
        f"error-2-{t}": f"error-2-{t}",  # 500 twice, then resolves in place
        f"slow-300-{t}": f"slow-300-{t}",
    }
    bad = {
        "not a token": "MalformedMessage",
        '{"offer_type": "free-trial"}': "MalformedMessage",
        f"invalid-{t}": "InvalidToken",
        f"expired-{t}": "ExpiredToken",
        f"disabled-{t}": "DisabledApi",
        f"product-othercode-{t}": "ProductNotAllowed",
        f"error-1000-{t}": "RetriesExhausted",  # fails on every delivery
    }
    send_all(sqs, resources.queue_url, [*good.values(), *bad])
    settings = make_settings(resources, allowed_product_codes=frozenset({EMULATOR_PRODUCT}))

    report = await run_worker(settings, until_empty=True)

    # At least once: a message delivered twice (moto has been seen to hand one message
    # to two concurrent receives) is settled twice; the checks by token below are exact.
    assert report.tally.outcomes["published"] >= len(good)
    assert report.tally.outcomes["dead_lettered"] >= len(bad)
    # The failing token is requeued until its receive count reaches the DLQ bound; a
    # copy moto handed out beside it (counted copy_in_hand, not handled) takes a receive
    # of its own, so there is one requeue fewer for each.
    requeues = resources.max_receives - 1
    copies = report.tally.outcomes["copy_in_hand"]
    assert requeues - copies <= report.tally.outcomes["requeued"] <= requeues
    assert report.retries >= 4

    raw = [m["Body"] for m in drain(sqs, resources.tap_queue_url)]
    for token in good:  # as published, through the sink: never the token
        assert not [body for body in raw if token in body]
    events = events_by_token(
        [event_of({"Body": b}, resources.sink) for b in raw], good, EMULATOR_PRODUCT
    )
    for token in good:
        event = events[token_sha256(token)]
        assert event["customer_aws_account_id"]
        assert event["license_arn"].startswith("arn:aws:license-manager::")
    form_event = events[token_sha256(f"tok+form/{t}=")]
    assert form_event["offer_type"] == "free-trial"
    json_event = events[token_sha256(f"tok-json-{t}")]
    assert json_event["correlation_id"] == f"corr-{t}"
    assert json_event["metadata"] == {"plan": "gold"}

    letters = dlq_by_body(sqs, resources)
    assert {body: a["dlq_reason"] for body, a in letters.items()} == bad
    exhausted = letters[f"error-1000-{t}"]
    assert exhausted["dlq_receive_count"] == str(resources.max_receives)
    assert "InternalServiceErrorException" in exhausted["dlq_error"]
    assert "dlq_token_sha256" not in letters["not a token"]
    assert letters[f"invalid-{t}"]["dlq_token_sha256"] == token_sha256(f"invalid-{t}")

    assert drain(sqs, resources.queue_url) == []


def cli_run_until_empty(
    sqs: SQSClient, resources: Resources, aws_env: dict[str, str], cwd: Path
) -> None:
    """`regworker run --until-empty` as a process: JSON logs, summary, exit 0, no token."""
    token = f"cli-{tag()}"
    send_all(sqs, resources.queue_url, [token, f"invalid-{tag()}"])
    env = {
        **clean_environ(),
        **aws_env,
        **resources.settings_env(),
        "REGWORKER_WAIT_TIME_SECONDS": "1",
        "REGWORKER_HTTP_PORT": "0",
        "REGWORKER_EVENT_BUS_NAME": resources.event_bus_name,
    }
    done = regworker(["run", "--until-empty"], env, cwd, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("regworker: dead_lettered=1, published=1")
    records = [json.loads(line) for line in lines[:-1]]
    assert {"worker_started", "published", "dead_lettered", "worker_stopped"} <= {
        r["event"] for r in records
    }
    assert token not in done.stderr
    assert len(drain(sqs, resources.tap_queue_url, expected=1)) == 1

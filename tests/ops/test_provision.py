"""`regworker provision` against moto server: what it creates, that a rerun creates
nothing and prints the same settings, the FIFO variant and the idempotency table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import drain, regworker, run_command, unique_name
from worker.cli import main
from worker.core.events import EVENT_TYPE
from worker.core.settings import Settings, Sink
from worker.local.sandbox import (
    LOCALSTACK_VENV,
    LocalService,
    clean_environ,
    free_port,
    local_env,
    localstack_server,
)
from worker.ops.provision import REDRIVE_MARGIN, ResourceNames, deny_without_tls

ROOT = Path(__file__).resolve().parents[2]
EVENTBRIDGE_KEYS = [
    "REGWORKER_QUEUE_URL",
    "REGWORKER_DLQ_URL",
    "REGWORKER_SINK",
    "REGWORKER_EVENT_BUS_NAME",
    "REGWORKER_EVENT_SOURCE",
    "REGWORKER_MAX_RECEIVES",
]
SNS_KEYS = [key.replace("EVENT_BUS_NAME", "TOPIC_ARN") for key in EVENTBRIDGE_KEYS]
LOCALSTACK_KEYS = [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_MARKETPLACE_METERING",
    "AWS_DEFAULT_REGION",
    "REGWORKER_AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
]
LOCALSTACK_INSTALLED = (LOCALSTACK_VENV / "bin" / "python").exists()
IN_CI = os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}


def parse_env(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines()]
    assert all(len(pair) == 2 for pair in pairs), text
    return dict(pairs)


def provisioned(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, str]:
    code, out, err = run_command(capsys, "provision", *args)
    assert code == 0, err
    return parse_env(out)


def attributes(session: boto3.Session, url: str) -> dict[str, str]:
    answer = session.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    return {str(key): value for key, value in answer["Attributes"].items()}


def redrive_allow_policy(moto: LocalService, queue_name: str) -> Any:
    """moto keeps RedriveAllowPolicy but GetQueueAttributes does not answer it, so it is
    read from moto server's state dump instead."""
    with urllib.request.urlopen(f"{moto.url}/moto-api/data.json") as answer:  # loopback
        state = json.load(answer)
    (policy,) = [
        q["redrive_allow_policy"] for q in state["sqs"]["Queue"] if q["name"] == queue_name
    ]
    return json.loads(policy)


def settings_from(env: dict[str, str]) -> Settings:
    values: dict[str, Any] = {
        key.removeprefix("REGWORKER_").lower(): value for key, value in env.items()
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def inventory(session: boto3.Session, name: str) -> dict[str, Any]:
    """Everything under this prefix, by kind, to compare before and after a rerun."""
    sqs = session.client("sqs")
    sns = session.client("sns")
    events = session.client("events")
    dynamodb = session.client("dynamodb")
    topics = [
        topic["TopicArn"]
        for topic in sns.list_topics().get("Topics", [])
        if topic["TopicArn"].rsplit(":", 1)[-1].startswith(f"{name}-")
    ]
    buses = [bus["Name"] for bus in events.list_event_buses(NamePrefix=name).get("EventBuses", [])]
    rules = [
        rule["Name"]
        for bus in buses
        for rule in events.list_rules(EventBusName=bus).get("Rules", [])
    ]
    return {
        "queues": sorted(sqs.list_queues(QueueNamePrefix=name).get("QueueUrls", [])),
        "topics": sorted(topics),
        "subscriptions": sorted(
            sub["SubscriptionArn"]
            for topic in topics
            for sub in sns.list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
        ),
        "buses": sorted(buses),
        "rules": sorted(rules),
        "targets": sorted(
            target["Id"]
            for bus in buses
            for rule in rules
            for target in events.list_targets_by_rule(Rule=rule, EventBusName=bus)["Targets"]
        ),
        "tables": sorted(
            table for table in dynamodb.list_tables()["TableNames"] if table.startswith(name)
        ),
    }


def queue_state(session: boto3.Session, url: str) -> dict[str, str]:
    """The attributes a rerun must leave as they are (timestamps and counts aside)."""
    return {
        key: value
        for key, value in attributes(session, url).items()
        if not key.endswith("Timestamp") and not key.startswith("Approximate")
    }


def test_eventbridge_queue_dlq_bus_and_rule(
    moto: LocalService, session: boto3.Session, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique_name("prov")
    code, out, err = run_command(
        capsys, "provision", "--name", name, "--max-receives", "3", "--tap"
    )
    assert code == 0, err
    env = parse_env(out)
    assert list(env) == EVENTBRIDGE_KEYS
    assert env["REGWORKER_SINK"] == "eventbridge"
    assert env["REGWORKER_EVENT_BUS_NAME"] == f"{name}-bus"
    assert env["REGWORKER_EVENT_SOURCE"] == "regworker.marketplace"
    assert env["REGWORKER_MAX_RECEIVES"] == "3"
    assert env["REGWORKER_QUEUE_URL"].endswith(f"/{name}")
    assert env["REGWORKER_DLQ_URL"].endswith(f"/{name}-dlq")
    assert "regworker provision: queue" in err
    assert "regworker provision: bus" in err

    queue = attributes(session, env["REGWORKER_QUEUE_URL"])
    dlq = attributes(session, env["REGWORKER_DLQ_URL"])
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 3 + REDRIVE_MARGIN
    assert queue["VisibilityTimeout"] == "60"
    assert redrive_allow_policy(moto, f"{name}-dlq") == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [queue["QueueArn"]],
    }
    assert dlq["MessageRetentionPeriod"] == "1209600"

    events = session.client("events")
    rules = events.list_rules(EventBusName=f"{name}-bus")["Rules"]
    assert [rule["Name"] for rule in rules] == [f"{name}-customer-registered"]
    assert json.loads(rules[0]["EventPattern"]) == {
        "source": ["regworker.marketplace"],
        "detail-type": [EVENT_TYPE],
    }


def test_rule_routes_matching_events_to_the_tap(
    session: boto3.Session, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique_name("prov")
    provisioned(capsys, "--name", name, "--tap", "--event-source", "billing.test")
    entries: list[Any] = [
        {"Source": source, "DetailType": detail_type, "Detail": "{}", "EventBusName": f"{name}-bus"}
        for source, detail_type in [
            ("billing.test", EVENT_TYPE),
            ("billing.test", "SomethingElse"),
            ("other.source", EVENT_TYPE),
        ]
    ]
    assert session.client("events").put_events(Entries=entries)["FailedEntryCount"] == 0
    sqs = session.client("sqs")
    delivered = drain(sqs, sqs.get_queue_url(QueueName=f"{name}-tap")["QueueUrl"])
    assert [json.loads(m["Body"])["source"] for m in delivered] == ["billing.test"]


def test_sns_topic_and_tap_subscription(
    session: boto3.Session, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique_name("prov")
    env = provisioned(capsys, "--name", name, "--sink", "sns", "--tap")
    assert list(env) == SNS_KEYS
    topic_arn = env["REGWORKER_TOPIC_ARN"]
    assert topic_arn.endswith(f":{name}-events")
    sns = session.client("sns")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    tap_url = session.client("sqs").get_queue_url(QueueName=f"{name}-tap")["QueueUrl"]
    tap_arn = attributes(session, tap_url)["QueueArn"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("sqs", tap_arn)]
    raw = sns.get_subscription_attributes(SubscriptionArn=subscriptions[0]["SubscriptionArn"])
    assert raw["Attributes"]["RawMessageDelivery"] == "true"
    sns.publish(TopicArn=topic_arn, Message='{"hello": "tap"}')
    assert [m["Body"] for m in drain(session.client("sqs"), tap_url, 1)] == ['{"hello": "tap"}']


def tls_denial(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for statement in policy["Statement"]
        if statement["Effect"] == "Deny"
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]


@pytest.mark.parametrize("sink", ["eventbridge", "sns"])
def test_tap_queue_policy_refuses_requests_without_tls(
    session: boto3.Session, capsys: pytest.CaptureFixture[str], sink: str
) -> None:
    """The one resource policy provision writes (the tap's) denies plain HTTP, as the
    template's queue and topic policies do; the sink still delivers to it (the tap tests
    above run with this policy in place)."""
    name = unique_name("prov")
    provisioned(capsys, "--name", name, "--sink", sink, "--tap")
    tap_url = session.client("sqs").get_queue_url(QueueName=f"{name}-tap")["QueueUrl"]
    tap = attributes(session, tap_url)
    policy = json.loads(tap["Policy"])
    assert tls_denial(policy) == [deny_without_tls(tap["QueueArn"])]
    assert [s["Action"] for s in policy["Statement"] if s["Effect"] == "Allow"] == [
        "sqs:SendMessage"
    ]


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="eventbridge"),
        pytest.param(["--sink", "sns"], id="sns"),
        pytest.param(["--sink", "sns", "--fifo", "--idempotency-table"], id="sns-fifo-table"),
        pytest.param(["--fifo", "--idempotency-table"], id="eventbridge-fifo-table"),
    ],
)
def test_rerun_changes_nothing(
    session: boto3.Session, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    name = unique_name("prov")
    args = ["--name", name, "--tap", *extra]
    first = provisioned(capsys, *args)
    before = inventory(session, name)
    states = {url: queue_state(session, url) for url in before["queues"]}
    second = provisioned(capsys, *args)
    assert second == first
    assert inventory(session, name) == before
    assert {url: queue_state(session, url) for url in before["queues"]} == states

    assert len(before["queues"]) == 3  # queue, DLQ, tap
    sns = "sns" in extra
    assert (len(before["topics"]), len(before["subscriptions"])) == ((1, 1) if sns else (0, 0))
    assert (len(before["buses"]), len(before["rules"])) == ((0, 0) if sns else (1, 1))
    assert before["targets"] == ([] if sns else ["tap"])
    assert len(before["tables"]) == (1 if "--idempotency-table" in extra else 0)


def test_fifo_variant(session: boto3.Session, capsys: pytest.CaptureFixture[str]) -> None:
    name = unique_name("prov")
    env = provisioned(capsys, "--name", name, "--sink", "sns", "--fifo", "--tap")
    assert env["REGWORKER_QUEUE_URL"].endswith(f"/{name}.fifo")
    assert env["REGWORKER_DLQ_URL"].endswith(f"/{name}-dlq.fifo")
    assert env["REGWORKER_TOPIC_ARN"].endswith(f":{name}-events.fifo")
    queue = attributes(session, env["REGWORKER_QUEUE_URL"])
    dlq = attributes(session, env["REGWORKER_DLQ_URL"])
    assert queue["FifoQueue"] == dlq["FifoQueue"] == "true"
    assert queue["ContentBasedDeduplication"] == "true"
    assert json.loads(queue["RedrivePolicy"])["deadLetterTargetArn"] == dlq["QueueArn"]
    topic = session.client("sns").get_topic_attributes(TopicArn=env["REGWORKER_TOPIC_ARN"])
    assert topic["Attributes"]["FifoTopic"] == "true"
    tap_url = session.client("sqs").get_queue_url(QueueName=f"{name}-tap.fifo")["QueueUrl"]
    assert attributes(session, tap_url)["FifoQueue"] == "true"
    assert settings_from(env).is_fifo


def test_idempotency_table(session: boto3.Session, capsys: pytest.CaptureFixture[str]) -> None:
    name = unique_name("prov")
    env = provisioned(capsys, "--name", name, "--idempotency-table")
    assert list(env) == [*EVENTBRIDGE_KEYS, "REGWORKER_IDEMPOTENCY_TABLE"]
    table_name = env["REGWORKER_IDEMPOTENCY_TABLE"]
    assert table_name == f"{name}-idempotency"
    dynamodb = session.client("dynamodb")
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "event_id", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "event_id", "AttributeType": "S"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = dynamodb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_table_with_another_key_is_refused(
    session: boto3.Session, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique_name("prov")
    session.client("dynamodb").create_table(
        TableName=f"{name}-idempotency",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    code, out, err = run_command(capsys, "provision", "--name", name, "--idempotency-table")
    assert (code, out) == (1, "")
    assert f"table {name}-idempotency: exists with key schema" in err
    assert "Traceback" not in err


def test_changed_max_receives_updates_the_existing_queue(
    session: boto3.Session, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique_name("prov")
    provisioned(capsys, "--name", name, "--max-receives", "3")
    queues = inventory(session, name)["queues"]
    code, out, err = run_command(capsys, "provision", "--name", name, "--max-receives", "6")
    assert code == 0
    assert f"queue {name}: existed with other attributes, updated them" in err
    env = parse_env(out)
    assert env["REGWORKER_MAX_RECEIVES"] == "6"
    redrive = json.loads(attributes(session, env["REGWORKER_QUEUE_URL"])["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 6 + REDRIVE_MARGIN
    assert inventory(session, name)["queues"] == queues


def test_subprocess_output_is_a_dotenv_the_worker_loads(
    aws_env: dict[str, str], tmp_path: Path
) -> None:
    name = unique_name("prov")
    command = [sys.executable, "-m", "worker", "provision", "--name", name, "--sink", "sns"]
    dotenv = tmp_path / ".env"
    with dotenv.open("w") as out:  # what `regworker provision > .env` does
        done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    written = tmp_path / "regworker.env"
    again = subprocess.run(
        [*command, "--output", str(written)], capture_output=True, text=True, check=False
    )
    assert (again.returncode, again.stdout) == (0, "")
    assert f"settings written to {written}" in again.stderr
    assert written.read_text() == dotenv.read_text()

    settings = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert settings.sink is Sink.SNS
    assert settings.queue_url.endswith(f"/{name}")
    assert settings.dlq_url.endswith(f"/{name}-dlq")
    assert settings.topic_arn.endswith(f":{name}-events")
    assert settings.max_receives == 5


def test_localstack_flag_uses_localstack_host(
    moto: LocalService, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """--localstack aims every client at LOCALSTACK_HOST; moto stands in for LocalStack
    (one port, every service), and AWS_ENDPOINT_URL is removed so nothing else could."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("LOCALSTACK_HOST", moto.url.removeprefix("http://"))
    name = unique_name("prov")
    env = provisioned(capsys, "--localstack", "--name", name, "--sink", "sns")
    assert env["REGWORKER_QUEUE_URL"].startswith(moto.url)
    sqs = boto3.client("sqs", endpoint_url=moto.url)
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == env["REGWORKER_QUEUE_URL"]


@pytest.mark.parametrize("sink", ["eventbridge", "sns"])
def test_tap_json_names_the_tap_queue(
    session: boto3.Session, capsys: pytest.CaptureFixture[str], sink: str
) -> None:
    name = unique_name("prov")
    code, out, err = run_command(
        capsys, "provision", "--name", name, "--sink", sink, "--tap", "--json"
    )
    assert code == 0, err
    printed = json.loads(out)
    tap = ResourceNames(name).tap(Sink(sink))
    tap_url = session.client("sqs").get_queue_url(QueueName=tap)["QueueUrl"]
    assert printed["REGWORKER_TAP_QUEUE_URL"] == tap_url
    without_tap = provisioned(capsys, "--name", name, "--sink", sink)
    assert {key: value for key, value in printed.items() if key in without_tap} == without_tap
    code, out, _ = run_command(capsys, "provision", "--name", name, "--sink", sink, "--json")
    assert "REGWORKER_TAP_QUEUE_URL" not in json.loads(out)


def test_localstack_output_is_all_the_other_commands_need(
    moto: LocalService,
    emulator: LocalService,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    tmp_path: Path,
) -> None:
    """`provision --localstack --output .env` writes the endpoints, region, credentials,
    queue URLs and sink; `regworker enqueue` and `regworker run` then work from that
    directory with nothing else set (moto stands in for LocalStack, in a region moto
    keeps apart; the emulator answers ResolveCustomer)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("LOCALSTACK_HOST", moto.url.removeprefix("http://"))
    name = unique_name("prov")
    dotenv = tmp_path / ".env"
    code, out, err = run_command(
        capsys,
        "provision",
        "--localstack",
        "--name",
        name,
        "--region",
        "eu-west-3",
        "--metering-endpoint",
        emulator.url,
        "--output",
        str(dotenv),
    )
    assert (code, out) == (0, ""), err
    written = parse_env(dotenv.read_text())
    assert {key: written[key] for key in LOCALSTACK_KEYS} == {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING": emulator.url,
        "AWS_DEFAULT_REGION": "eu-west-3",
        "REGWORKER_AWS_REGION": "eu-west-3",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    assert list(written) == [*LOCALSTACK_KEYS, *EVENTBRIDGE_KEYS]
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # a variable set in the shell beats the file
    settings = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert (settings.aws_region, settings.sink) == ("eu-west-3", Sink.EVENTBRIDGE)

    token = f"tok-{unique_name()}"
    only_the_file = {
        **clean_environ(),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    sent = regworker(["enqueue", token], only_the_file, tmp_path)
    assert (sent.returncode, sent.stdout) == (0, "sent 1, failed 0\n"), sent.stderr
    ran = regworker(
        ["run", "--until-empty"],
        {**only_the_file, "REGWORKER_HTTP_PORT": "0", "REGWORKER_WAIT_TIME_SECONDS": "1"},
        tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert "published=1" in ran.stderr


def test_unreachable_endpoint_is_one_line_and_exit_1(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    started = time.monotonic()
    code, out, err = run_command(capsys, "provision", "--name", unique_name("prov"))
    assert (code, out) == (1, "")
    assert err.startswith("regworker provision: ")
    assert err.count("\n") == 1
    assert "Could not connect" in err
    assert time.monotonic() - started < 30


def test_missing_credentials_is_a_settings_error(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, out, err = run_command(capsys, "provision", "--name", unique_name("prov"))
    assert (code, out) == (2, "")
    assert err == "regworker provision: Unable to locate credentials\n"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--name", "has space"], "1-44 letters"),
        (["--name", "x" * 45], "1-44 letters"),
        (["--max-receives", "0"], "must be within 1..997"),
        (["--max-receives", "998"], "must be within 1..997"),
        (["--max-receives", "many"], "not a whole number"),
        (["--event-source", "aws.marketplace"], "reserved for AWS"),
        (["--sink", "sqs"], "is not one of"),
    ],
)
def test_bad_usage_exits_2(args: list[str], complaint: str, capsys: Any) -> None:
    assert main(["provision", *args]) == 2
    assert complaint in capsys.readouterr().err


def test_region_option_wins(aws_env: dict[str, str], capsys: Any) -> None:
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    name = unique_name("prov")
    env = provisioned(capsys, "--name", name, "--region", "eu-west-1", "--sink", "sns")
    assert env["REGWORKER_TOPIC_ARN"].startswith("arn:aws:sns:eu-west-1:")


@pytest.fixture(scope="module")
def localstack() -> Iterator[LocalService]:
    """LocalStack as `make localstack` installs it; skipped without it, except in CI."""
    if not LOCALSTACK_INSTALLED:
        message = f"LocalStack is not installed ({LOCALSTACK_VENV}): `make localstack`"
        if IN_CI:
            pytest.fail(f"{message} (CI is set: this test must run, not skip)")
        pytest.skip(message)
    with localstack_server(venv=LOCALSTACK_VENV) as service:
        yield service


@pytest.mark.xdist_group("localstack")
@pytest.mark.parametrize(
    "extra",
    [pytest.param([], id="eventbridge"), pytest.param(["--sink", "sns", "--fifo"], id="sns-fifo")],
)
def test_on_localstack(
    localstack: LocalService,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
) -> None:
    """LocalStack answers what moto cannot show (RedriveAllowPolicy), and the queue URL
    format docker-compose.yml writes out in advance (SQS_ENDPOINT_STRATEGY=path)."""
    for key, value in local_env(localstack.url, "http://127.0.0.1:9").items():
        monkeypatch.setenv(key, value)
    name = unique_name("prov")
    first = provisioned(capsys, "--name", name, "--tap", *extra)
    assert provisioned(capsys, "--name", name, "--tap", *extra) == first
    names = ResourceNames(name, fifo="--fifo" in extra)
    base = f"{localstack.url}/queue/us-east-1/000000000000"
    assert first["REGWORKER_QUEUE_URL"] == f"{base}/{names.queue}"
    assert first["REGWORKER_DLQ_URL"] == f"{base}/{names.dlq}"
    session = boto3.Session(region_name="us-east-1")
    queue = attributes(session, first["REGWORKER_QUEUE_URL"])
    dlq = attributes(session, first["REGWORKER_DLQ_URL"])
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 5 + REDRIVE_MARGIN
    assert json.loads(dlq["RedriveAllowPolicy"]) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [queue["QueueArn"]],
    }
    # LocalStack takes the tap's TLS-only policy, and the sink still delivers through it.
    sqs = session.client("sqs")
    tap_url = sqs.get_queue_url(
        QueueName=names.tap(Sink.SNS if "sns" in extra else Sink.EVENTBRIDGE)
    )
    tap = attributes(session, tap_url["QueueUrl"])
    assert tls_denial(json.loads(tap["Policy"])) == [deny_without_tls(tap["QueueArn"])]
    if "sns" in extra:
        session.client("sns").publish(
            TopicArn=first["REGWORKER_TOPIC_ARN"],
            Message='{"hello": "tap"}',
            MessageGroupId="g",
            MessageDeduplicationId="d",
        )
    else:
        entry: Any = {
            "Source": first["REGWORKER_EVENT_SOURCE"],
            "DetailType": EVENT_TYPE,
            "Detail": "{}",
            "EventBusName": first["REGWORKER_EVENT_BUS_NAME"],
        }
        assert session.client("events").put_events(Entries=[entry])["FailedEntryCount"] == 0
    delivered: list[Any] = []
    deadline = time.monotonic() + 15  # delivery is asynchronous: allow a loaded machine
    while not delivered and time.monotonic() < deadline:
        delivered = drain(sqs, tap_url["QueueUrl"], 1)
    assert len(delivered) == 1

"""Create what the worker needs: the queue, its DLQ with a redrive policy, and the sink.

Idempotent: every call either creates a resource or finds the one already there (and
brings its attributes back to what is asked), so running it twice changes nothing and
answers the same settings. Optional extras: a DynamoDB idempotency table, and a "tap"
queue subscribed to the sink that the demo and the tests read events from.

``regworker provision`` prints the settings as ``KEY=value`` lines (``> .env`` works);
progress goes to stderr. deploy/cloudformation.yaml creates the same resources.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from worker.aws.sqs_wire import queue_arn
from worker.core.events import EVENT_TYPE
from worker.core.faults import describe, error_code
from worker.core.settings import Sink

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_sns.client import SNSClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

    QueueAttributes = Mapping[QueueAttributeNameType, str]

# The queue's own redrive is the safety net for crashes: it must not fire before the
# worker has had its chance to dead-letter a message with a reason.
REDRIVE_MARGIN: Final = 3
MAX_RECEIVE_COUNT: Final = 1000  # SQS's ceiling for a redrive policy's maxReceiveCount
DEFAULT_NAME: Final = "regworker"
DEFAULT_EVENT_SOURCE: Final = "regworker.marketplace"
DEFAULT_MAX_RECEIVES: Final = 5
DEFAULT_REGION: Final = "us-east-1"
# The longest derived name is the rule, "<name>-customer-registered", and EventBridge
# rule names stop at 64 characters: 64 - 20 leaves 44 for the prefix.
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,44}")
IDEMPOTENCY_KEY: Final = "event_id"
IDEMPOTENCY_TTL_ATTRIBUTE: Final = "expires_at"
DLQ_RETENTION_SECONDS: Final = 1_209_600  # 14 days, SQS's maximum
QUEUE_RETENTION_SECONDS: Final = 345_600  # 4 days
QUEUE_VISIBILITY_SECONDS: Final = 60
TAP_TARGET_ID: Final = "tap"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class ProvisionError(Exception):
    """A resource exists in a shape the worker cannot use; the message says which."""


@dataclass(frozen=True)
class ResourceNames:
    """Every name derived from one prefix, shared with the CloudFormation template."""

    prefix: str
    fifo: bool = False

    @property
    def _suffix(self) -> str:
        return ".fifo" if self.fifo else ""

    @property
    def queue(self) -> str:
        return f"{self.prefix}{self._suffix}"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}-dlq{self._suffix}"

    @property
    def topic(self) -> str:
        return f"{self.prefix}-events{self._suffix}"

    @property
    def bus(self) -> str:
        return f"{self.prefix}-bus"

    @property
    def rule(self) -> str:
        return f"{self.prefix}-customer-registered"

    @property
    def table(self) -> str:
        return f"{self.prefix}-idempotency"

    def tap(self, sink: Sink) -> str:
        # A FIFO topic delivers only to FIFO queues; an EventBridge target can be standard.
        return f"{self.prefix}-tap{self._suffix if sink is Sink.SNS else ''}"


@dataclass(frozen=True)
class Resources:
    queue_url: str
    dlq_url: str
    sink: Sink
    event_bus_name: str = ""
    rule_name: str = ""
    topic_arn: str = ""
    event_source: str = DEFAULT_EVENT_SOURCE
    tap_queue_url: str = ""
    max_receives: int = DEFAULT_MAX_RECEIVES
    idempotency_table: str = ""

    def settings_env(self) -> dict[str, str]:
        """The REGWORKER_* variables that point a worker at these resources."""
        env = {
            "REGWORKER_QUEUE_URL": self.queue_url,
            "REGWORKER_DLQ_URL": self.dlq_url,
            "REGWORKER_SINK": self.sink.value,
        }
        if self.sink is Sink.SNS:
            env["REGWORKER_TOPIC_ARN"] = self.topic_arn
        else:
            env["REGWORKER_EVENT_BUS_NAME"] = self.event_bus_name
        env["REGWORKER_EVENT_SOURCE"] = self.event_source
        env["REGWORKER_MAX_RECEIVES"] = str(self.max_receives)
        if self.idempotency_table:
            env["REGWORKER_IDEMPOTENCY_TABLE"] = self.idempotency_table
        return env


def rule_pattern(event_source: str) -> dict[str, list[str]]:
    return {"source": [event_source], "detail-type": [EVENT_TYPE]}


def ensure_queue(
    sqs: SQSClient, name: str, attributes: QueueAttributes, report: Progress = _quiet
) -> str:
    """The queue's URL. CreateQueue answers the existing queue when the attributes asked
    for match; when they differ, the existing queue is brought to them instead."""
    try:
        return sqs.create_queue(QueueName=name, Attributes=dict(attributes))["QueueUrl"]
    except sqs.exceptions.QueueNameExists:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        # FifoQueue is fixed at creation; the name's ".fifo" suffix already decided it.
        mutable: dict[QueueAttributeNameType, str] = {
            key: value for key, value in attributes.items() if key != "FifoQueue"
        }
        sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)
        report(f"queue {name}: existed with other attributes, updated them")
        return url


def create_queues(
    sqs: SQSClient,
    name: str,
    *,
    max_receives: int,
    fifo: bool = False,
    report: Progress = _quiet,
) -> tuple[str, str]:
    """The source queue and its DLQ, linked both ways: the queue's redrive policy names
    the DLQ, and the DLQ's redrive-allow policy accepts only this queue."""
    names = ResourceNames(name, fifo)
    fifo_attributes: dict[QueueAttributeNameType, str] = {"FifoQueue": "true"} if fifo else {}
    dlq_url = ensure_queue(
        sqs,
        names.dlq,
        {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS), **fifo_attributes},
        report,
    )
    redrive = {
        "deadLetterTargetArn": queue_arn(sqs, dlq_url),
        "maxReceiveCount": max_receives + REDRIVE_MARGIN,
    }
    # Content-based deduplication lets producers send to the FIFO queue without ids: a
    # browser that posts the same token twice within five minutes counts once.
    dedup: dict[QueueAttributeNameType, str] = {"ContentBasedDeduplication": "true"} if fifo else {}
    queue_url = ensure_queue(
        sqs,
        names.queue,
        {
            "VisibilityTimeout": str(QUEUE_VISIBILITY_SECONDS),
            "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
            "RedrivePolicy": json.dumps(redrive),
            **fifo_attributes,
            **dedup,
        },
        report,
    )
    allow = {"redrivePermission": "byQueue", "sourceQueueArns": [queue_arn(sqs, queue_url)]}
    sqs.set_queue_attributes(QueueUrl=dlq_url, Attributes={"RedriveAllowPolicy": json.dumps(allow)})
    report(f"queue {queue_url} (redrive to the DLQ after {redrive['maxReceiveCount']} receives)")
    report(f"dlq   {dlq_url}")
    return queue_url, dlq_url


def deny_without_tls(resource_arn: str, actions: str | list[str] = "sqs:*") -> dict[str, Any]:
    """The statement deploy/cloudformation.yaml puts in every queue and topic policy:
    any request that does not come over TLS is refused."""
    return {
        "Sid": "DenyWithoutTls",
        "Effect": "Deny",
        "Principal": "*",
        "Action": actions,
        "Resource": resource_arn,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def allow_sender(sqs: SQSClient, queue_url: str, service: str, source_arn: str) -> None:
    arn = queue_arn(sqs, queue_url)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowTheSink",
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
            },
            deny_without_tls(arn),
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})


def ensure_topic(sns: SNSClient, names: ResourceNames) -> str:
    """CreateTopic answers the existing topic's ARN when the attributes match."""
    if names.fifo:
        return sns.create_topic(Name=names.topic, Attributes={"FifoTopic": "true"})["TopicArn"]
    return sns.create_topic(Name=names.topic)["TopicArn"]


def ensure_bus(events: EventBridgeClient, name: str) -> None:
    try:
        events.describe_event_bus(Name=name)
    except events.exceptions.ResourceNotFoundException:
        events.create_event_bus(Name=name)


def ensure_rule(events: EventBridgeClient, names: ResourceNames, event_source: str) -> str:
    """PutRule creates or updates, so the pattern always matches what is asked."""
    return events.put_rule(
        Name=names.rule,
        EventBusName=names.bus,
        EventPattern=json.dumps(rule_pattern(event_source)),
        State="ENABLED",
        Description="CustomerRegistered events from the registration worker",
    )["RuleArn"]


def ensure_table(dynamodb: DynamoDBClient, name: str, report: Progress = _quiet) -> None:
    """The idempotency table: partition key event_id (S), on-demand, TTL on expires_at."""
    try:
        table = dynamodb.describe_table(TableName=name)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": IDEMPOTENCY_KEY, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": IDEMPOTENCY_KEY, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.get_waiter("table_exists").wait(TableName=name)
        report(f"table {name}: created")
    else:
        _check_table_key(name, table.get("KeySchema", []))
    _ensure_ttl(dynamodb, name)
    report(f"table {name}: ready (key {IDEMPOTENCY_KEY}, TTL on {IDEMPOTENCY_TTL_ATTRIBUTE})")


def _ensure_ttl(dynamodb: DynamoDBClient, name: str) -> None:
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in {"ENABLED", "ENABLING"}:
        # UpdateTimeToLive fails when TTL is already on, so it is asked only when off.
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": IDEMPOTENCY_TTL_ATTRIBUTE},
        )
    elif ttl.get("AttributeName") != IDEMPOTENCY_TTL_ATTRIBUTE:
        raise ProvisionError(
            f"table {name}: TTL is on attribute {ttl.get('AttributeName')!r},"
            f" the worker writes {IDEMPOTENCY_TTL_ATTRIBUTE!r}"
        )


def _check_table_key(name: str, key_schema: object) -> None:
    expected = [{"AttributeName": IDEMPOTENCY_KEY, "KeyType": "HASH"}]
    if key_schema != expected:
        raise ProvisionError(
            f"table {name}: exists with key schema {key_schema}, the worker needs {expected}"
        )


def provision(
    session: boto3.Session,
    name: str,
    sink: Sink,
    *,
    max_receives: int = DEFAULT_MAX_RECEIVES,
    event_source: str = DEFAULT_EVENT_SOURCE,
    tap: bool = False,
    fifo: bool = False,
    idempotency_table: bool = False,
    report: Progress = _quiet,
) -> Resources:
    """Create or find every resource under the prefix ``name``; ``report`` gets one line
    per resource (the CLI prints them on stderr)."""
    names = ResourceNames(name, fifo)
    sqs = session.client("sqs")
    queue_url, dlq_url = create_queues(
        sqs, name, max_receives=max_receives, fifo=fifo, report=report
    )
    tap_url = _ensure_tap(sqs, names, sink) if tap else ""
    table = ""
    if idempotency_table:
        ensure_table(session.client("dynamodb"), names.table, report)
        table = names.table
    common = Resources(
        queue_url,
        dlq_url,
        sink,
        event_source=event_source,
        tap_queue_url=tap_url,
        max_receives=max_receives,
        idempotency_table=table,
    )
    if sink is Sink.SNS:
        return _provision_sns(session.client("sns"), sqs, names, common, report)
    return _provision_eventbridge(session.client("events"), sqs, names, common, report)


def _ensure_tap(sqs: SQSClient, names: ResourceNames, sink: Sink) -> str:
    name = names.tap(sink)
    attributes: dict[QueueAttributeNameType, str] = (
        {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    )
    return ensure_queue(sqs, name, attributes)


def _provision_sns(
    sns: SNSClient, sqs: SQSClient, names: ResourceNames, common: Resources, report: Progress
) -> Resources:
    topic_arn = ensure_topic(sns, names)
    report(f"topic {topic_arn}")
    if common.tap_queue_url:
        allow_sender(sqs, common.tap_queue_url, "sns.amazonaws.com", topic_arn)
        # Subscribe answers the existing subscription when endpoint and attributes match.
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn(sqs, common.tap_queue_url),
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )
        report(f"tap   {common.tap_queue_url} (subscribed to the topic)")
    return replace(common, topic_arn=topic_arn)


def _provision_eventbridge(
    events: EventBridgeClient,
    sqs: SQSClient,
    names: ResourceNames,
    common: Resources,
    report: Progress,
) -> Resources:
    ensure_bus(events, names.bus)
    rule_arn = ensure_rule(events, names, common.event_source)
    report(f"bus   {names.bus}, rule {names.rule} (source {common.event_source})")
    if common.tap_queue_url:
        allow_sender(sqs, common.tap_queue_url, "events.amazonaws.com", rule_arn)
        # PutTargets replaces the target with the same Id, so a rerun adds nothing.
        events.put_targets(
            Rule=names.rule,
            EventBusName=names.bus,
            Targets=[{"Id": TAP_TARGET_ID, "Arn": queue_arn(sqs, common.tap_queue_url)}],
        )
        report(f"tap   {common.tap_queue_url} (target of the rule)")
    return replace(common, event_bus_name=names.bus, rule_name=names.rule)


# --- command line -------------------------------------------------------------------


def resource_prefix(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: 1-44 letters, digits, '-' or '_' (it prefixes every resource name)"
        )
    return value


def max_receives_arg(value: str) -> int:
    highest = MAX_RECEIVE_COUNT - REDRIVE_MARGIN
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: not a whole number") from None
    if not 1 <= number <= highest:
        raise argparse.ArgumentTypeError(
            f"{number}: must be within 1..{highest} (the redrive policy adds {REDRIVE_MARGIN}"
            f" and SQS allows at most {MAX_RECEIVE_COUNT})"
        )
    return number


def event_source_arg(value: str) -> str:
    if not value or value.startswith("aws.") or len(value) > 256:
        raise argparse.ArgumentTypeError(
            f"{value!r}: 1-256 characters, not starting with 'aws.' (reserved for AWS)"
        )
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "provision",
        description="Create (or find) the SQS queue, its DLQ with a redrive policy, and the"
        " sink: an EventBridge bus with a CustomerRegistered rule, or an SNS topic. Endpoints"
        " and credentials come from the standard AWS variables. Prints the REGWORKER_*"
        " settings as KEY=value lines; progress goes to stderr. Running it again changes"
        " nothing and prints the same settings.",
        epilog="examples:\n"
        "  regworker provision > .env\n"
        "  regworker provision --name billing --sink sns --fifo --idempotency-table\n"
        "  regworker provision --localstack --tap --json\n"
        "  regworker provision --output /config/regworker.env",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--name",
        type=resource_prefix,
        default=DEFAULT_NAME,
        metavar="PREFIX",
        help="prefix of every resource name (%(default)s)",
    )
    parser.add_argument(
        "--sink", choices=[sink.value for sink in Sink], default=Sink.EVENTBRIDGE.value
    )
    parser.add_argument(
        "--fifo", action="store_true", help="FIFO queue and DLQ (with --sink sns a FIFO topic)"
    )
    parser.add_argument(
        "--max-receives",
        type=max_receives_arg,
        default=DEFAULT_MAX_RECEIVES,
        metavar="N",
        help=f"deliveries before the worker dead-letters (%(default)s); the queue's redrive"
        f" policy fires at N+{REDRIVE_MARGIN}",
    )
    parser.add_argument(
        "--event-source",
        type=event_source_arg,
        default=DEFAULT_EVENT_SOURCE,
        help="Source of published events, matched by the rule (%(default)s)",
    )
    parser.add_argument(
        "--idempotency-table",
        action="store_true",
        help=f"also a DynamoDB table <name>-idempotency ({IDEMPOTENCY_KEY}, TTL on"
        f" {IDEMPOTENCY_TTL_ATTRIBUTE})",
    )
    parser.add_argument(
        "--tap", action="store_true", help="also a queue subscribed to the sink, for testing"
    )
    parser.add_argument("--json", action="store_true", help="print the settings as JSON")
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write the settings to FILE"
    )
    parser.add_argument(
        "--region", help="AWS region (default: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1)"
    )
    parser.add_argument(
        "--localstack",
        action="store_true",
        help="aim at LocalStack (LOCALSTACK_HOST, default localhost:4566) with dummy credentials",
    )
    parser.set_defaults(handler=provision_command)


def provision_command(args: argparse.Namespace) -> int:
    region = (
        args.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or DEFAULT_REGION
    )
    try:
        session = (
            localstack_session(region) if args.localstack else boto3.Session(region_name=region)
        )
    except ImportError as error:
        return _fail(str(error), 2)
    try:
        resources = provision(
            session,
            args.name,
            Sink(args.sink),
            max_receives=args.max_receives,
            event_source=args.event_source,
            tap=args.tap,
            fifo=args.fifo,
            idempotency_table=args.idempotency_table,
            report=_progress,
        )
    except (NoCredentialsError, PartialCredentialsError) as error:
        return _fail(describe(error), 2)
    except ClientError as error:
        return _fail(f"{error_code(error)}: {describe(error)}", 1)
    except (BotoCoreError, ProvisionError) as error:
        return _fail(describe(error), 1)
    text = render_settings(resources.settings_env(), as_json=args.json)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomically(args.output, text)
        _progress(f"settings written to {args.output}")
    return 0


def render_settings(env: Mapping[str, str], *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps(env, indent=2) + "\n"
    return "".join(f"{key}={value}\n" for key, value in env.items())


def write_atomically(path: Path, text: str) -> None:
    """A reader (a worker starting next to this) sees the old file or the new, never half."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def localstack_session(region: str) -> boto3.Session:
    try:
        from localstack_client.session import Session as LocalStackSession
    except ImportError:
        raise ImportError(
            "--localstack needs the 'local' extra: pip install 'regworker[local]'"
        ) from None
    # Not a boto3.Session, but it builds the same clients through the same client().
    return cast(boto3.Session, LocalStackSession(region_name=region))


def _progress(line: str) -> None:
    print(f"regworker provision: {line}", file=sys.stderr)


def _fail(message: str, code: int) -> int:
    print(f"regworker provision: {message}", file=sys.stderr)
    return code

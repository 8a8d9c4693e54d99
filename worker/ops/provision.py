"""Create what the worker needs: the queue, its DLQ with a redrive policy, and the sink.

Idempotent: every call either creates a resource or finds the one already there (and
brings its attributes back to what is asked), so running it twice changes nothing and
answers the same settings. Optional extras: a DynamoDB idempotency table, and a "tap"
queue subscribed to the sink that the demo and the tests read events from.

``regworker provision`` (``worker.cli.provision``) prints the settings as ``KEY=value``
lines (``> .env`` works); progress goes to stderr. deploy/cloudformation.yaml creates
the same resources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import boto3

from worker.aws.localstack import LOCALSTACK_CREDENTIALS
from worker.aws.sqs_wire import queue_arn
from worker.core.events import EVENT_TYPE
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


# LocalStack takes any credentials; these are its documented ones (account 000000000000).


def localstack_env(region: str, metering_endpoint: str) -> dict[str, str]:
    """The AWS variables that aim every other command at the LocalStack a
    ``localstack_session`` reaches: its endpoint, the region and test credentials; and,
    as LocalStack does not emulate ResolveCustomer, the endpoint that answers it."""
    try:
        from localstack_client.config import get_service_endpoint
    except ImportError:
        raise ImportError(
            "--localstack needs the 'local' extra: pip install 'regworker[local]'"
        ) from None
    endpoint = get_service_endpoint("sqs") or ""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING": metering_endpoint,
        "AWS_DEFAULT_REGION": region,
        "REGWORKER_AWS_REGION": region,
        **LOCALSTACK_CREDENTIALS,
    }

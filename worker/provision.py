"""Create what the worker needs: the queue, its DLQ with a redrive policy, and the sink.

Idempotent: every call either creates a resource or finds the one already there.
A "tap" queue subscribed to the sink is optional; the demo and tests read events from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import boto3

from worker.events import EVENT_TYPE
from worker.settings import Sink

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

# The queue's own redrive is the safety net for crashes: it must not fire before the
# worker has had its chance to dead-letter a message with a reason.
REDRIVE_MARGIN: Final = 3


@dataclass(frozen=True)
class Resources:
    queue_url: str
    dlq_url: str
    sink: Sink
    event_bus_name: str = ""
    rule_name: str = ""
    topic_arn: str = ""
    event_source: str = "regworker.marketplace"
    tap_queue_url: str = ""
    max_receives: int = 5

    def settings_env(self) -> dict[str, str]:
        """The REGWORKER_* variables that point a worker at these resources."""
        env = {
            "REGWORKER_QUEUE_URL": self.queue_url,
            "REGWORKER_DLQ_URL": self.dlq_url,
            "REGWORKER_SINK": self.sink.value,
            "REGWORKER_EVENT_SOURCE": self.event_source,
            "REGWORKER_MAX_RECEIVES": str(self.max_receives),
        }
        if self.sink is Sink.SNS:
            env["REGWORKER_TOPIC_ARN"] = self.topic_arn
        else:
            env["REGWORKER_EVENT_BUS_NAME"] = self.event_bus_name
        return env


def queue_arn(sqs: SQSClient, url: str) -> str:
    answer = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return answer["Attributes"]["QueueArn"]


def create_queues(
    sqs: SQSClient, name: str, *, max_receives: int, fifo: bool = False
) -> tuple[str, str]:
    suffix = ".fifo" if fifo else ""
    fifo_attributes: dict[QueueAttributeNameType, str] = {"FifoQueue": "true"} if fifo else {}
    dlq_url = sqs.create_queue(
        QueueName=f"{name}-dlq{suffix}",
        Attributes={"MessageRetentionPeriod": "1209600", **fifo_attributes},
    )["QueueUrl"]
    dlq_arn = queue_arn(sqs, dlq_url)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives + REDRIVE_MARGIN}
    queue_url = sqs.create_queue(
        QueueName=f"{name}{suffix}",
        Attributes={
            "VisibilityTimeout": "60",
            "MessageRetentionPeriod": "345600",
            "RedrivePolicy": json.dumps(redrive),
            **fifo_attributes,
        },
    )["QueueUrl"]
    source_arn = queue_arn(sqs, queue_url)
    sqs.set_queue_attributes(
        QueueUrl=dlq_url,
        Attributes={
            "RedriveAllowPolicy": json.dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [source_arn]}
            )
        },
    )
    return queue_url, dlq_url


def allow_sender(sqs: SQSClient, queue_url: str, service: str, source_arn: str) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn(sqs, queue_url),
                "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})


def provision(
    session: boto3.Session,
    name: str,
    sink: Sink,
    *,
    max_receives: int = 5,
    event_source: str = "regworker.marketplace",
    tap: bool = False,
) -> Resources:
    sqs = session.client("sqs")
    queue_url, dlq_url = create_queues(sqs, name, max_receives=max_receives)
    tap_url = sqs.create_queue(QueueName=f"{name}-tap")["QueueUrl"] if tap else ""
    if sink is Sink.SNS:
        sns = session.client("sns")
        topic_arn = sns.create_topic(Name=f"{name}-events")["TopicArn"]
        if tap:
            allow_sender(sqs, tap_url, "sns.amazonaws.com", topic_arn)
            sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=queue_arn(sqs, tap_url),
                Attributes={"RawMessageDelivery": "true"},
            )
        return Resources(
            queue_url,
            dlq_url,
            sink,
            topic_arn=topic_arn,
            event_source=event_source,
            tap_queue_url=tap_url,
            max_receives=max_receives,
        )
    events = session.client("events")
    bus_name = f"{name}-bus"
    if not any(
        bus["Name"] == bus_name
        for bus in events.list_event_buses(NamePrefix=bus_name).get("EventBuses", [])
    ):
        events.create_event_bus(Name=bus_name)
    rule_name = f"{name}-customer-registered"
    rule_arn = events.put_rule(
        Name=rule_name,
        EventBusName=bus_name,
        EventPattern=json.dumps({"source": [event_source], "detail-type": [EVENT_TYPE]}),
    )["RuleArn"]
    if tap:
        allow_sender(sqs, tap_url, "events.amazonaws.com", rule_arn)
        events.put_targets(
            Rule=rule_name,
            EventBusName=bus_name,
            Targets=[{"Id": "tap", "Arn": queue_arn(sqs, tap_url)}],
        )
    return Resources(
        queue_url,
        dlq_url,
        sink,
        event_bus_name=bus_name,
        rule_name=rule_name,
        event_source=event_source,
        tap_queue_url=tap_url,
        max_receives=max_receives,
    )

"""Ugly bodies through real SQS: each lands in the DLQ with its reason, and the good
tokens around them still publish.

Every body of ``tests.support.HOSTILE`` goes through the handler in-process
(tests/core/test_handler.py::test_hostile_bodies_are_dead_lettered_with_their_reasons,
which holds this test's assertions for all of them). Here only the bodies whose trip
over the wire can go wrong: SQS's smallest and near-largest bodies (the dead letter cut
to fit, ``dlq_body_truncated``), control and non-ASCII characters, a large body, and
tokens botocore must send to ResolveCustomer as they are.
"""

from __future__ import annotations

import json
import uuid

import pytest
from mypy_boto3_sqs.client import SQSClient

from tests.support import (
    HOSTILE,
    dead_letter_document,
    drain,
    event_of,
    make_settings,
    original_body,
    schema_validator,
)
from worker.core.events import token_sha256
from worker.core.service import run_worker
from worker.ops.provision import Resources

T = uuid.uuid4().hex[:8]
ON_THE_WIRE = [
    "   \n\t  ",
    "x" * (256 * 1024 - 64),
    "tok\tcontrol\rchars",
    "toké",
    "{" * 50_000,
    "<script>alert(1)</script>",
    "';DROP/**/TABLE/**/x;--",
]
WIRE_HOSTILE = {body: HOSTILE[body] for body in ON_THE_WIRE}


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_hostile_bodies_land_in_the_dlq_with_reasons(
    sqs: SQSClient, resources: Resources
) -> None:
    good = [f"good-{n}-{T}" for n in range(2)]
    bodies = [good[0], *ON_THE_WIRE, good[1]]
    for body in bodies:
        sqs.send_message(QueueUrl=resources.queue_url, MessageBody=body)

    report = await run_worker(make_settings(resources), until_empty=True)

    # SQS delivers at least once: moto server has been seen to hand one message to two
    # concurrent receives, and each delivery is settled. The checks below are exact
    # per body; the counts only say nothing was skipped.
    assert report.tally.outcomes["published"] >= len(good)
    assert report.tally.outcomes["dead_lettered"] >= len(WIRE_HOSTILE)
    published = {
        event_of(m, resources.sink)["token_sha256"] for m in drain(sqs, resources.tap_queue_url)
    }
    assert published == {token_sha256(token) for token in good}

    validator = schema_validator("dead-letter")
    reasons: dict[str, str] = {}
    for message in drain(sqs, resources.dlq_url):
        document = dead_letter_document(message)
        validator.validate(document)
        attributes = document["attributes"]
        reasons[original_body(attributes, document["body"], ON_THE_WIRE)] = attributes["dlq_reason"]
        assert attributes["dlq_error"]
    assert reasons == WIRE_HOSTILE
    assert drain(sqs, resources.queue_url) == []


def test_hostile_bodies_are_valid_sqs_text() -> None:
    """Guard on the test data itself: each case must be something SQS accepts."""
    allowed = {0x9, 0xA, 0xD}
    for body in HOSTILE:
        assert body
        assert all(ord(c) in allowed or ord(c) >= 0x20 for c in body), body[:20]
        assert len(body.encode()) <= 256 * 1024
    assert json.loads('{"registration_token": "a\\u0001b"}')["registration_token"] == "a\x01b"

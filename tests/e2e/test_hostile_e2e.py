"""Ugly bodies through real SQS: each lands in the DLQ with its reason, and the good
tokens around them still publish."""

from __future__ import annotations

import json
import uuid

import pytest
from mypy_boto3_sqs.client import SQSClient

from tests.conftest import dead_letter_document, drain, event_of, make_settings, schema_validator
from worker.core.events import token_sha256
from worker.core.service import run_worker
from worker.ops.provision import Resources

T = uuid.uuid4().hex[:8]
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


@pytest.mark.parametrize("resources", ["sns"], indirect=True)
async def test_hostile_bodies_land_in_the_dlq_with_reasons(
    sqs: SQSClient, resources: Resources
) -> None:
    good = [f"good-{n}-{T}" for n in range(4)]
    bodies = [good[0], *list(HOSTILE)[:10], good[1], *list(HOSTILE)[10:], good[2], good[3]]
    for body in bodies:
        sqs.send_message(QueueUrl=resources.queue_url, MessageBody=body)

    report = await run_worker(make_settings(resources), until_empty=True)

    # SQS delivers at least once: moto server has been seen to hand one message to two
    # concurrent receives, and each delivery is settled. The checks below are exact
    # per body; the counts only say nothing was skipped.
    assert report.tally.outcomes["published"] >= len(good)
    assert report.tally.outcomes["dead_lettered"] >= len(HOSTILE)
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
        body = document["body"]
        if "dlq_body_truncated" in attributes:
            original = next(
                b for b in HOSTILE if len(b.encode()) == int(attributes["dlq_body_truncated"])
            )
            assert original.startswith(body)
            body = original
        reasons[body] = attributes["dlq_reason"]
        assert attributes["dlq_error"]
    assert reasons == HOSTILE
    assert drain(sqs, resources.queue_url) == []


def test_hostile_bodies_are_valid_sqs_text() -> None:
    """Guard on the test data itself: each case must be something SQS accepts."""
    allowed = {0x9, 0xA, 0xD}
    for body in HOSTILE:
        assert body
        assert all(ord(c) in allowed or ord(c) >= 0x20 for c in body), body[:20]
        assert len(body.encode()) <= 256 * 1024
    assert json.loads('{"registration_token": "a\\u0001b"}')["registration_token"] == "a\x01b"

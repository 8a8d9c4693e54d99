"""`regworker dlq`: stats, peek, replay and redrive against moto over real sockets.

The DLQ is filled the way the worker fills it: bodies untouched, attributes built by
``worker.core.dead_letter.dead_letter_attributes``; one message has no attributes at all,
as if the queue's own redrive policy had moved it after a crash.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from mypy_boto3_sqs.client import SQSClient

from tests.support import REGION, drain, run_command, unique_name
from worker.aws.sqs_wire import ReceivedMessage, chunks, queue_depth
from worker.cli import main, parse
from worker.cli.dlq import parse_duration, target_from
from worker.cli.output import ProgressBar
from worker.core.dead_letter import (
    ERROR,
    FAILED_AT,
    REASON,
    RECEIVE_COUNT,
    REPLAY_COUNT,
    SOURCE_MESSAGE_ID,
    TOKEN_SHA256,
    DeadLetter,
    dead_letter_attributes,
)
from worker.core.errors import DeadLetterReason
from worker.core.events import token_ref, token_sha256
from worker.local.sandbox import LOCALSTACK_VENV, localstack_server
from worker.ops.dlq.audit import AuditLog
from worker.ops.dlq.model import UNKNOWN_REASON, DlqMessage, escaped_prefix
from worker.ops.dlq.replay import Replayer
from worker.ops.dlq.selection import Decision, ReplayOptions, decide
from worker.ops.dlq.target import sqs_client
from worker.ops.provision import REDRIVE_MARGIN, create_queues

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, MessageTypeDef

R = DeadLetterReason
MALFORMED_SECRET = "SECRET-PART-OF-A-BROKEN-BODY-qzwxjv"
MALFORMED_BODY = f'{{"registration_token": "{MALFORMED_SECRET}", "x": 1}}'


def new_token() -> str:
    """Long enough that finding it in the output can only mean a leak."""
    return "tok" + uuid.uuid4().hex + uuid.uuid4().hex


def string(value: str) -> MessageAttributeValueTypeDef:
    return {"DataType": "String", "StringValue": value}


def letter_attributes(
    body: str,
    reason: DeadLetterReason,
    *,
    with_hash: bool = True,
    sender: dict[str, str] | None = None,
    failed_at: datetime | None = None,
    group_id: str | None = None,
) -> dict[str, MessageAttributeValueTypeDef]:
    """What the worker attaches when it dead-letters ``body``."""
    received = ReceivedMessage(
        message_id=str(uuid.uuid4()),
        receipt_handle="unused",
        body=body,
        receive_count=4,
        group_id=group_id,
        attributes=MappingProxyType(
            {
                name: {"DataType": "String", "StringValue": value}
                for name, value in (sender or {}).items()
            }
        ),
    )
    letter = DeadLetter(
        received,
        reason,
        f"{reason.value}: the test says so",
        token_sha256=token_sha256(body)
        if with_hash and reason is not R.MALFORMED_MESSAGE
        else None,
    )
    attributes = cast(dict[str, "MessageAttributeValueTypeDef"], dead_letter_attributes(letter))
    if failed_at is not None:
        attributes[FAILED_AT] = string(failed_at.isoformat().replace("+00:00", "Z"))
    return attributes


def put(
    sqs: SQSClient,
    dlq_url: str,
    body: str,
    attributes: dict[str, MessageAttributeValueTypeDef] | None,
    group_id: str | None = None,
) -> None:
    if group_id is None:
        sqs.send_message(QueueUrl=dlq_url, MessageBody=body, MessageAttributes=attributes or {})
        return
    sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=body,
        MessageAttributes=attributes or {},
        MessageGroupId=group_id,
        MessageDeduplicationId=uuid.uuid4().hex,
    )


@dataclass
class Filled:
    queue_url: str
    dlq_url: str
    bodies: dict[str, list[str]] = field(default_factory=dict)  # reason label -> bodies

    @property
    def all_bodies(self) -> set[str]:
        return {body for bodies in self.bodies.values() for body in bodies}

    def add(self, reason: str, body: str) -> None:
        self.bodies.setdefault(reason, []).append(body)

    def args(self, *extra: str) -> list[str]:
        return [*extra, "--dlq-url", self.dlq_url, "--region", REGION]

    def replay_args(self, *extra: str) -> list[str]:
        return ["dlq", "replay", *self.args(*extra), "--to", self.queue_url]


@pytest.fixture
def filled(sqs: SQSClient) -> Filled:
    """A DLQ with 8 messages: RetriesExhausted 3, InvalidToken 2, ExpiredToken 1,
    MalformedMessage 1 and one moved by the redrive policy (no attributes)."""
    queue_url, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=3)
    filled = Filled(queue_url, dlq_url)
    for reason, count in [(R.RETRIES_EXHAUSTED, 2), (R.INVALID_TOKEN, 2), (R.EXPIRED_TOKEN, 1)]:
        for index in range(count):
            body = new_token()
            put(sqs, dlq_url, body, letter_attributes(body, reason, with_hash=index == 0))
            filled.add(reason.value, body)
    body = new_token()
    sender = {"source": "web-1", REPLAY_COUNT: "1"}
    put(sqs, dlq_url, body, letter_attributes(body, R.RETRIES_EXHAUSTED, sender=sender))
    filled.add(R.RETRIES_EXHAUSTED.value, body)
    put(sqs, dlq_url, MALFORMED_BODY, letter_attributes(MALFORMED_BODY, R.MALFORMED_MESSAGE))
    filled.add(R.MALFORMED_MESSAGE.value, MALFORMED_BODY)
    body = new_token()
    put(sqs, dlq_url, body, None)
    filled.add(UNKNOWN_REASON, body)
    return filled


def assert_untouched(sqs: SQSClient, dlq_url: str, count: int) -> None:
    """Every message is back and visible at once, none in flight."""
    depth = queue_depth(sqs, dlq_url)
    assert (depth.visible, depth.in_flight) == (count, 0)


def bodies(messages: list[Any]) -> list[str]:
    return [message["Body"] for message in messages]


def pieces_of(secret: str, text: str, size: int = 8) -> list[str]:
    """The ``size``-character pieces of ``secret`` that occur in ``text``, ignoring
    pieces made only of JSON punctuation and spaces (a key's quotes, ``": "``)."""
    pieces = {secret[start : start + size] for start in range(len(secret) - size + 1)}
    return sorted(p for p in pieces if p in text and p.strip('{}[]":, '))


def string_attributes(message: Any) -> dict[str, str]:
    return {
        name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()
    }


# ------------------------------------------------------------------------------ stats


def test_stats_json_counts_by_reason(
    filled: Filled, sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    code, out, _ = run_command(capsys, "dlq", "stats", *filled.args("--json"))
    assert code == 0
    report = json.loads(out)
    assert report["approximate"] == {"visible": 8, "in_flight": 0, "delayed": 0}
    assert report["scanned"] == 8
    counts = {reason: entry["count"] for reason, entry in report["by_reason"].items()}
    assert counts == {
        "RetriesExhausted": 3,
        "InvalidToken": 2,
        "ExpiredToken": 1,
        "MalformedMessage": 1,
        UNKNOWN_REASON: 1,
    }
    oldest = datetime.fromisoformat(report["oldest"])
    newest = datetime.fromisoformat(report["newest"])
    assert started <= oldest <= newest <= datetime.now(UTC) + timedelta(seconds=5)
    # The redrive-policy message has no dlq_failed_at: SentTimestamp stands in.
    assert report["by_reason"][UNKNOWN_REASON]["oldest"] is not None
    assert_untouched(sqs, filled.dlq_url, 8)


def test_stats_table_is_readable(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_command(capsys, "dlq", "stats", *filled.args())
    assert code == 0
    rows = {line.split("  ")[0].strip(): line.split() for line in out.splitlines() if line}
    assert rows["RetriesExhausted"][1] == "3"
    assert rows[UNKNOWN_REASON][3] == "1"  # "Unknown (redrive policy)" is three words
    assert rows["all"][1] == "8"
    assert "approximate  8 (8 visible, 0 in flight, 0 delayed)" in out


def test_stats_of_an_empty_dlq(sqs: SQSClient, capsys: pytest.CaptureFixture[str]) -> None:
    _, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=3)
    code, out, _ = run_command(capsys, "dlq", "stats", "--dlq-url", dlq_url, "--region", REGION)
    assert code == 0
    assert "The DLQ is empty." in out


# ------------------------------------------------------------------------------- peek


def test_peek_shows_messages_without_consuming_or_leaking_tokens(
    filled: Filled, sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_command(capsys, "dlq", "peek", *filled.args("--max", "20"))
    assert code == 0
    assert out.startswith("8 message(s), left in the DLQ:")
    for reason, reason_bodies in filled.bodies.items():
        for body in reason_bodies:
            assert body not in out
            if reason != "MalformedMessage":
                assert f"token {token_ref(body)}" in out
    assert (
        f"malformed body of {len(MALFORMED_BODY)} chars (sha256 {token_ref(MALFORMED_BODY)})" in out
    )
    assert not pieces_of(MALFORMED_SECRET, out)
    assert out.count("RetriesExhausted: the test says so") == 3
    assert "replays 1" in out
    assert_untouched(sqs, filled.dlq_url, 8)


def test_peek_json_filters_by_reason(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_command(
        capsys, "dlq", "peek", *filled.args("--reason", "invalidtoken", "--json")
    )
    assert code == 0
    messages = json.loads(out)["messages"]
    assert [message["reason"] for message in messages] == ["InvalidToken", "InvalidToken"]
    # One carried dlq_token_sha256, the other is hashed from the body: same answer.
    assert {message["token_ref"] for message in messages} == {
        token_ref(body) for body in filled.bodies["InvalidToken"]
    }
    assert all(message["receive_count"] == 4 for message in messages)
    assert all("body_preview" not in message for message in messages)


def test_peek_json_of_malformed_and_unknown(
    filled: Filled, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_command(
        capsys,
        "dlq",
        "peek",
        *filled.args("--reason", "MalformedMessage", "--reason", "Unknown", "--json"),
    )
    assert code == 0
    by_reason = {message["reason"]: message for message in json.loads(out)["messages"]}
    malformed = by_reason["MalformedMessage"]
    assert malformed["token_ref"] is None
    assert malformed["body_length"] == len(MALFORMED_BODY)
    assert malformed["body_sha256"] == token_ref(MALFORMED_BODY)
    assert malformed["body_error"].startswith("JSON body has 1 unknown key (1 character,")
    assert "body_preview" not in malformed
    assert malformed["dead_lettered_by"] == "worker"
    assert not pieces_of(MALFORMED_SECRET, out)
    unknown = by_reason[UNKNOWN_REASON]
    assert unknown["error"] is None
    assert unknown["receive_count"] is None
    assert unknown["token_ref"] == token_ref(filled.bodies[UNKNOWN_REASON][0])
    assert unknown["dead_lettered_by"] == "redrive policy"
    assert unknown["body"] == {
        "format": "token",
        "offer_type": None,
        "correlation_id": None,
        "received_at": None,
    }


def test_peek_max_limits_the_listing(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_command(capsys, "dlq", "peek", *filled.args("--max", "3", "--json"))
    assert code == 0
    assert len(json.loads(out)["messages"]) == 3


# ----------------------------------------------------------------------------- replay


def test_replay_moves_all_but_terminal_and_malformed_by_default(
    filled: Filled, sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 9: a plain replay leaves InvalidToken, ExpiredToken and MalformedMessage
    letters in the DLQ, and says how many it skipped and why."""
    code, out, _ = run_command(capsys, *filled.replay_args("--json"))
    assert code == 0
    summary = json.loads(out)
    assert summary["moved"] == 4
    skipped = {"ExpiredToken": 1, "InvalidToken": 2, "MalformedMessage": 1}
    assert summary["skipped"] == summary["skipped_by_default"] == skipped
    assert (summary["refused"], summary["failed"], summary["left_in_both"]) == (0, 0, 0)

    moved = drain(sqs, filled.queue_url)
    expected = set(filled.bodies["RetriesExhausted"]) | set(filled.bodies[UNKNOWN_REASON])
    assert sorted(bodies(moved)) == sorted(expected)
    for message in moved:
        attributes = string_attributes(message)
        assert not [name for name in attributes if name.startswith("dlq_")]
        if attributes.get("source") == "web-1":
            assert attributes == {"source": "web-1", REPLAY_COUNT: "2"}
        else:
            assert attributes == {REPLAY_COUNT: "1"}
    left = drain(sqs, filled.dlq_url)
    assert sorted(bodies(left)) == sorted(
        filled.bodies["InvalidToken"] + filled.bodies["ExpiredToken"] + [MALFORMED_BODY]
    )


def test_replay_moves_malformed_letters_when_named(
    filled: Filled, sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_command(
        capsys, *filled.replay_args("--reason", "MalformedMessage", "--json")
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["moved"] == 1
    assert summary["skipped_by_default"] == {}
    assert bodies(drain(sqs, filled.queue_url)) == [MALFORMED_BODY]
    assert_untouched(sqs, filled.dlq_url, 7)


def test_plain_replay_says_what_it_skipped_by_default(
    filled: Filled, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_command(capsys, *filled.replay_args())
    assert code == 0
    assert "  moved       4" in out
    assert (
        "  (4 skipped by default: ExpiredToken 1, InvalidToken 2, MalformedMessage 1."
        " Tokens that can never resolve and bodies that can never parse stay in the DLQ;"
        " name a reason with --reason to replay it, or add --include-terminal)"
    ) in out


def test_replay_reason_filter_and_max(
    filled: Filled, sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_command(
        capsys, *filled.replay_args("--reason", "RetriesExhausted", "--max", "2", "--json")
    )
    assert code == 0
    assert json.loads(out)["moved"] == 2
    moved = bodies(drain(sqs, filled.queue_url))
    assert len(moved) == 2
    assert set(moved) <= set(filled.bodies["RetriesExhausted"])
    assert_untouched(sqs, filled.dlq_url, 6)


def test_replay_dry_run_changes_nothing(
    filled: Filled, sqs: SQSClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = tmp_path / "audit.jsonl"
    code, out, _ = run_command(
        capsys, *filled.replay_args("--dry-run", "--json", "--audit-log", str(audit))
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["dry_run"] is True
    assert summary["moved"] == 4
    assert Counter(item["reason"] for item in summary["would_move"]) == {
        "RetriesExhausted": 3,
        UNKNOWN_REASON: 1,
    }
    assert summary["skipped_by_default"] == {
        "ExpiredToken": 1,
        "InvalidToken": 2,
        "MalformedMessage": 1,
    }
    assert_untouched(sqs, filled.dlq_url, 8)
    assert queue_depth(sqs, filled.queue_url).total == 0
    assert not audit.exists()


def test_replay_dry_run_human_output(filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_command(capsys, *filled.replay_args("--dry-run"))
    assert code == 0
    listed = [line for line in out.splitlines() if line.startswith("would move  ")]
    assert len(listed) == 4
    assert "  would move  4" in out
    assert "dry run, nothing changed: 8 examined" in out
    assert "4 skipped by default: ExpiredToken 1, InvalidToken 2, MalformedMessage 1." in out
    assert "--include-terminal" in out
    assert not any(body in out for body in filled.all_bodies)


def test_replay_terminal_reasons_when_named_or_included(
    filled: Filled, sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_command(capsys, *filled.replay_args("--reason", "InvalidToken", "--json"))
    assert code == 0
    assert json.loads(out)["moved"] == 2
    assert sorted(bodies(drain(sqs, filled.queue_url))) == sorted(filled.bodies["InvalidToken"])

    code, out, _ = run_command(capsys, *filled.replay_args("--include-terminal", "--json"))
    assert code == 0
    assert json.loads(out)["moved"] == 6
    assert queue_depth(sqs, filled.dlq_url).total == 0


def test_replay_refuses_messages_replayed_too_often(
    sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    queue_url, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=3)
    tired, fresh = new_token(), new_token()
    sender = {REPLAY_COUNT: "3"}
    put(sqs, dlq_url, tired, letter_attributes(tired, R.RETRIES_EXHAUSTED, sender=sender))
    put(sqs, dlq_url, fresh, letter_attributes(fresh, R.RETRIES_EXHAUSTED))
    argv = ["dlq", "replay", "--dlq-url", dlq_url, "--to", queue_url, "--region", REGION]

    code, out, _ = run_command(capsys, *argv, "--json")
    assert code == 0
    summary = json.loads(out)
    assert (summary["moved"], summary["refused"]) == (1, 1)
    assert bodies(drain(sqs, queue_url)) == [fresh]
    assert_untouched(sqs, dlq_url, 1)

    code, out, _ = run_command(capsys, *argv, "--max-replays", "5")
    assert code == 0
    assert "moved       1" in out
    [moved] = drain(sqs, queue_url)
    assert moved["Body"] == tired
    assert string_attributes(moved)[REPLAY_COUNT] == "4"


def test_replay_by_age(sqs: SQSClient, capsys: pytest.CaptureFixture[str]) -> None:
    queue_url, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=3)
    old, recent = new_token(), new_token()
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    put(sqs, dlq_url, old, letter_attributes(old, R.RETRIES_EXHAUSTED, failed_at=three_hours_ago))
    put(sqs, dlq_url, recent, letter_attributes(recent, R.RETRIES_EXHAUSTED))
    argv = ["dlq", "replay", "--dlq-url", dlq_url, "--to", queue_url, "--region", REGION]

    assert run_command(capsys, *argv, "--older-than", "2h")[0] == 0
    assert bodies(drain(sqs, queue_url)) == [old]
    assert run_command(capsys, *argv, "--newer-than", "1h30m")[0] == 0
    assert bodies(drain(sqs, queue_url)) == [recent]
    assert queue_depth(sqs, dlq_url).total == 0


def test_replay_audit_log(
    filled: Filled, sqs: SQSClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text('{"earlier": "line"}\n')
    code, _, _ = run_command(
        capsys, *filled.replay_args("--reason", "RetriesExhausted", "--audit-log", str(audit))
    )
    assert code == 0
    text = audit.read_text()
    assert not any(body in text for body in filled.all_bodies)
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0] == {"earlier": "line"}  # appended, not overwritten
    records = lines[1:]
    moved = drain(sqs, filled.queue_url)
    assert len(records) == len(moved) == 3
    by_new_id = {message["MessageId"]: message for message in moved}
    for record in records:
        message = by_new_id[record["new_message_id"]]
        assert record["token_sha256"] == token_sha256(message["Body"])
        assert record["reason"] == "RetriesExhausted"
        assert str(record["replay_count"]) == string_attributes(message)[REPLAY_COUNT]
        assert record["destination"] == filled.queue_url
        datetime.fromisoformat(record["time"])
    assert len({record["dlq_message_id"] for record in records}) == 3


def test_replay_audit_log_that_cannot_be_opened_is_exit_2(
    filled: Filled, sqs: SQSClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_command(capsys, *filled.replay_args("--audit-log", str(tmp_path)))
    assert code == 2
    assert out == ""
    assert err.startswith(f"regworker dlq replay: --audit-log: cannot open {tmp_path}: ")
    assert err.count("\n") == 1
    assert_untouched(sqs, filled.dlq_url, 8)


def test_replay_fifo_keeps_group_and_dedups_on_replay_count(
    sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    queue_url, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=3, fifo=True)
    sent = {new_token(): group for group in ("group-a", "group-a", "group-b")}
    for body, group in sent.items():
        attributes = letter_attributes(body, R.RETRIES_EXHAUSTED, group_id=group)
        put(sqs, dlq_url, body, attributes, group_id=group)
    dlq_ids = {}
    for message in sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]:
        dlq_ids[message["Body"]] = message["MessageId"]
        sqs.change_message_visibility(
            QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    assert len(dlq_ids) == 3
    argv = ["dlq", "replay", "--dlq-url", dlq_url, "--to", queue_url, "--region", REGION]
    code, out, _ = run_command(capsys, *argv, "--json")
    assert code == 0
    assert json.loads(out)["moved"] == 3

    moved = drain(sqs, queue_url)
    assert sorted(bodies(moved)) == sorted(sent)
    for message in moved:
        system = message["Attributes"]
        assert system["MessageGroupId"] == sent[message["Body"]]
        if "MessageDeduplicationId" in system:
            assert system["MessageDeduplicationId"] == f"{dlq_ids[message['Body']]}-replay-1"
        assert string_attributes(message)[REPLAY_COUNT] == "1"
    # Within a group the order is kept.
    group_a = [message["Body"] for message in moved if sent[message["Body"]] == "group-a"]
    assert group_a == [body for body, group in sent.items() if group == "group-a"]


# ------------------------------------------------------------- no token fragments


def test_peek_and_dry_run_show_no_text_of_a_malformed_body(
    sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bodies that are a token with something around it: their first 40 characters
    used to be shown, most of the token."""
    queue_url, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=3)
    token = new_token()
    bodies = [
        f"{token} and a space",
        f'{{"registration_token": "a", "{token}": 1}}',
        f"{token}&x-amzn-marketplace-token=a",
    ]
    for body in bodies:
        put(sqs, dlq_url, body, letter_attributes(body, R.MALFORMED_MESSAGE))
    put(sqs, dlq_url, bodies[0] + "!", None)  # moved by the redrive policy: no worker error
    args = ["--dlq-url", dlq_url, "--region", REGION]

    outputs = [
        run_command(capsys, "dlq", "peek", *args)[1],
        run_command(capsys, "dlq", "peek", *args, "--json")[1],
        run_command(capsys, "dlq", "replay", *args, "--to", queue_url, "--dry-run")[1],
        run_command(capsys, "dlq", "replay", *args, "--to", queue_url, "--dry-run", "--json")[1],
    ]

    for out in outputs:
        assert not pieces_of(token, out), out
    text, document = outputs[0], json.loads(outputs[1])
    for body in bodies:
        assert f"malformed body of {len(body)} chars (sha256 {token_ref(body)})" in text
    assert "does not parse: registration token may only hold printable ASCII" in text
    by_hash = {message["body_sha256"]: message for message in document["messages"]}
    assert by_hash[token_ref(bodies[1])]["body_error"].startswith(
        f"JSON body has 1 unknown key ({len(token)} characters, sha256 {token_ref(token)}"
    )
    assert_untouched(sqs, dlq_url, 4)


def test_repr_of_a_dlq_message_shows_no_body() -> None:
    token = new_token()
    message = received(token, letter_attributes(token, R.RETRIES_EXHAUSTED))
    malformed = received(f"{token} x", {})
    for shown in (repr(message), repr(malformed), repr([message, malformed])):
        assert not pieces_of(token, shown)
    assert f"token_ref='{token_ref(token)}'" in repr(message)
    assert f"body_sha256='{token_ref(token + ' x')}'" in repr(malformed)


# ----------------------------------------------------------- what `dlq` trusts


def forged(**values: str) -> dict[str, MessageAttributeValueTypeDef]:
    return {name: string(value) for name, value in values.items()}


def moved_by_redrive_policy(
    sqs: SQSClient,
    queue_url: str,
    dlq_url: str,
    messages: list[tuple[str, dict[str, MessageAttributeValueTypeDef]]],
) -> dict[str, str]:
    """Send each (body, attributes) to the source queue and receive until the queue's
    redrive policy has moved every one to the DLQ, as after repeated crashes; returns
    each body's MessageId as the source queue gave it."""
    sent = {
        body: sqs.send_message(QueueUrl=queue_url, MessageBody=body, MessageAttributes=attrs)[
            "MessageId"
        ]
        for body, attrs in messages
    }
    for _ in range(1 + REDRIVE_MARGIN + 3):
        sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        if queue_depth(sqs, dlq_url).visible == len(messages):
            return sent
    raise AssertionError("the redrive policy did not move the messages to the DLQ")


def test_attributes_forged_by_a_sender_do_not_steer_replay(
    sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Good tokens sent with attributes named like the worker's, then moved to the DLQ by
    the redrive policy (a crash loop): replay must not skip them as terminal, and a
    forged replay_count must not refuse one without saying so."""
    queue_url, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=1)
    expired, invalid, tired = new_token(), new_token(), new_token()
    sent = moved_by_redrive_policy(
        sqs,
        queue_url,
        dlq_url,
        [
            (expired, forged(dlq_reason="ExpiredToken")),
            (
                invalid,
                forged(
                    dlq_reason="InvalidToken",
                    dlq_error="InvalidTokenException: forged",
                    dlq_source_message_id="forged-id",
                    dlq_receive_count="4",
                    dlq_token_sha256=token_sha256("another token"),
                ),
            ),
            (tired, forged(source="web-1", replay_count="999999")),
        ],
    )
    args = ["--dlq-url", dlq_url, "--region", REGION]

    code, out, _ = run_command(capsys, "dlq", "peek", *args, "--json")
    assert code == 0
    peeked = {message["message_id"]: message for message in json.loads(out)["messages"]}
    # The redrive policy keeps the MessageId (moto, like SQS and LocalStack).
    assert set(peeked) == set(sent.values())
    for body, message_id in sent.items():
        message = peeked[message_id]
        assert message["reason"] == UNKNOWN_REASON
        assert message["dead_lettered_by"] == "redrive policy"
        assert (message["error"], message["receive_count"]) == (None, None)
        assert message["token_ref"] == token_ref(body)  # from the body, not the forged hash
    assert peeked[sent[invalid]]["ignored_attributes"] == 5
    code, out, _ = run_command(capsys, "dlq", "peek", *args)
    assert "5 dlq_* attribute(s) ignored, not the worker's" in out

    code, out, _ = run_command(capsys, "dlq", "replay", *args, "--to", queue_url, "--json")
    assert code == 0
    summary = json.loads(out)
    assert (summary["moved"], summary["skipped"], summary["refused"]) == (2, {}, 1)
    [refused] = summary["refused_messages"]
    assert (refused["message_id"], refused["replay_count"]) == (sent[tired], 999999)
    assert sorted(bodies(drain(sqs, queue_url))) == sorted([expired, invalid])

    code, out, _ = run_command(capsys, "dlq", "replay", *args, "--to", queue_url)
    assert code == 0
    assert (
        f"refused     {sent[tired]}  {UNKNOWN_REASON}  replay_count 999999 (from the message)"
        f"  token {token_ref(tired)}"
    ) in out
    assert "replay_count is read from the message, and whoever sent it can set it" in out

    code, out, _ = run_command(
        capsys, "dlq", "replay", *args, "--to", queue_url, "--max-replays", "1000000", "--json"
    )
    assert json.loads(out)["moved"] == 1
    [moved] = drain(sqs, queue_url)
    assert moved["Body"] == tired
    assert string_attributes(moved) == {"source": "web-1", REPLAY_COUNT: "1000000"}


@pytest.mark.parametrize("count", ["\u00b2", "\u0663", "9" * 5000, "-1", "1e9", ""])
def test_a_replay_count_that_is_not_a_count_is_none(
    sqs: SQSClient, capsys: pytest.CaptureFixture[str], count: str
) -> None:
    """ "²".isdigit() is true but int() refuses it, as it does 5000 digits: such a
    value used to stop the whole replay with a traceback."""
    queue_url, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=3)
    body = new_token()
    sender = {REPLAY_COUNT: count} if count else {}
    put(sqs, dlq_url, body, letter_attributes(body, R.RETRIES_EXHAUSTED, sender=sender))
    args = ["--dlq-url", dlq_url, "--region", REGION, "--to", queue_url, "--json"]
    code, out, _ = run_command(capsys, "dlq", "replay", *args)
    assert code == 0
    assert json.loads(out)["moved"] == 1
    [moved] = drain(sqs, queue_url)
    assert string_attributes(moved)[REPLAY_COUNT] == "1"


def received(
    body: str,
    attributes: dict[str, MessageAttributeValueTypeDef],
    *,
    message_id: str = "3c7a2fe1-994a-4057-a955-0b5c47aa77c0",
    system: dict[str, str] | None = None,
) -> DlqMessage:
    """A DLQ message as ReceiveMessage answers it."""
    answer = {
        "MessageId": message_id,
        "ReceiptHandle": "handle",
        "Body": body,
        "Attributes": {"SentTimestamp": "1700000000000", **(system or {})},
        "MessageAttributes": attributes,
    }
    return DlqMessage.from_sqs(cast("MessageTypeDef", answer))


def test_which_letters_are_the_workers() -> None:
    body = new_token()
    letter = letter_attributes(body, R.EXPIRED_TOKEN)
    assert received(body, letter).reason == "ExpiredToken"
    assert received(body, letter).dead_lettered_by == "worker"

    lookalike = {**letter, TOKEN_SHA256: string(token_sha256("another token"))}
    not_the_workers = {
        # SQS and LocalStack mark what a redrive policy moved.
        "moved": received(
            body,
            lookalike,
            system={"DeadLetterQueueSourceArn": "arn:aws:sqs:us-east-1:123456789012:regs"},
        ),
        # A move keeps the MessageId; a letter is a new message.
        "own id": received(body, lookalike, message_id=letter[SOURCE_MESSAGE_ID]["StringValue"]),
        "odd reason": received(body, {**lookalike, REASON: string("Whatever")}),
        "odd count": received(body, {**lookalike, RECEIVE_COUNT: string("four")}),
        "odd time": received(body, {**lookalike, FAILED_AT: string("yesterday")}),
        "odd type": received(
            body, {**lookalike, RECEIVE_COUNT: {"DataType": "Number", "StringValue": "4"}}
        ),
        **{
            f"no {name}": received(
                body, {key: value for key, value in lookalike.items() if key != name}
            )
            for name in (REASON, ERROR, SOURCE_MESSAGE_ID, RECEIVE_COUNT, FAILED_AT)
        },
    }
    for case, message in not_the_workers.items():
        assert message.reason == UNKNOWN_REASON, case
        assert (message.error, message.receive_count) == (None, None), case
        assert message.failed_at == datetime.fromtimestamp(1_700_000_000, UTC), case
        assert message.token_hash == token_sha256(body), case  # not the forged one
        assert message.ignored_attributes >= 5, case
        assert decide(message, ReplayOptions(), datetime.now(UTC)) is Decision.MOVE, case


IN_CI = os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}
LOCALSTACK_INSTALLED = (LOCALSTACK_VENV / "bin" / "python").exists()


@pytest.mark.xdist_group("localstack")
@pytest.mark.skipif(
    not LOCALSTACK_INSTALLED and not IN_CI, reason="LocalStack is not installed (make localstack)"
)
def test_localstack_marks_what_its_redrive_policy_moved(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where SQS's DeadLetterQueueSourceArn exists, even a forger who writes the worker's
    whole set of attributes gets nothing past `dlq`."""
    with localstack_server() as localstack:
        for name, value in {
            "AWS_ENDPOINT_URL": localstack.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }.items():
            monkeypatch.setenv(name, value)
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=1)
        good, letter_body = new_token(), new_token()
        sent = moved_by_redrive_policy(
            sqs, queue_url, dlq_url, [(good, letter_attributes(good, R.EXPIRED_TOKEN))]
        )
        put(sqs, dlq_url, letter_body, letter_attributes(letter_body, R.EXPIRED_TOKEN))
        args = ["--dlq-url", dlq_url, "--region", REGION]

        code, out, _ = run_command(capsys, "dlq", "peek", *args, "--json")
        peeked = {message["message_id"]: message for message in json.loads(out)["messages"]}
        moved = peeked.pop(sent[good])  # LocalStack keeps the MessageId too
        assert moved["reason"] == UNKNOWN_REASON
        assert moved["moved_from"].endswith(":" + queue_url.rsplit("/", 1)[1])
        [letter] = peeked.values()
        assert letter["reason"] == "ExpiredToken"

        code, out, _ = run_command(capsys, "dlq", "replay", *args, "--to", queue_url, "--json")
        assert code == 0
        summary = json.loads(out)
        assert (summary["moved"], summary["skipped"]) == (1, {"ExpiredToken": 1})
        assert bodies(drain(sqs, queue_url)) == [good]


# ---------------------------------------------------------------- lossless interruption


def fill_many(sqs: SQSClient, dlq_url: str, count: int) -> set[str]:
    all_bodies = [new_token() for _ in range(count)]
    for chunk in chunks(all_bodies):
        sqs.send_message_batch(
            QueueUrl=dlq_url,
            Entries=[
                {
                    "Id": str(index),
                    "MessageBody": body,
                    "MessageAttributes": letter_attributes(body, R.RETRIES_EXHAUSTED),
                }
                for index, body in enumerate(chunk)
            ],
        )
    return set(all_bodies)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Interrupted:
    sent: set[str]
    out: str
    in_source: list[str]
    in_dlq: list[str]
    audit_text: str

    def check_lossless(self) -> tuple[int, int]:
        """Every body is in one queue or both; returns how many are in each."""
        assert set(self.in_source) | set(self.in_dlq) == self.sent, "a message is lost"
        assert set(self.in_source) <= self.sent
        assert set(self.in_dlq) <= self.sent
        assert len(self.in_source) == len(set(self.in_source))  # each sent once
        audited = {json.loads(line)["token_sha256"] for line in self.audit_text.splitlines()}
        assert audited == {token_sha256(body) for body in self.in_source}
        return len(self.in_source), len(self.in_dlq)


def interrupted_replay(
    sqs: SQSClient, aws_env: dict[str, str], tmp_path: Path, signals: int
) -> Interrupted:
    """Replay 300 messages at 50/s in a child process, Ctrl-C it mid-run, and wait for
    anything still held to come back before reading both queues."""
    queue_url, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=3)
    sent = fill_many(sqs, dlq_url, 300)
    audit = tmp_path / "audit.jsonl"
    env = {
        **aws_env,
        "PATH": os.environ["PATH"],
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    command = [sys.executable, "-m", "worker", "dlq", "replay", "--dlq-url", dlq_url]
    command += ["--to", queue_url, "--rate", "50", "--audit-log", str(audit), "--region", REGION]
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: audit.exists() and audit.read_text().count("\n") >= 20, 30, "moves")
        time.sleep(0.7)  # about 2 s into the run; lands anywhere inside a batch
        for _ in range(signals):
            child.send_signal(signal.SIGINT)
            time.sleep(0.02)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # Exit code 130; with two signals the second may also land after the summary, while
    # the interpreter is exiting and SIGINT is back to its default: the shell's 130 too.
    assert child.returncode in ((130,) if signals == 1 else (130, -signal.SIGINT)), err
    assert "interrupted: stopped early" in out
    # A second Ctrl-C may abandon a batch received but not yet held: it comes back by
    # itself when its visibility lapses.
    wait_until(lambda: queue_depth(sqs, dlq_url).in_flight == 0, 45, "held messages")
    in_source = bodies(drain(sqs, queue_url))
    in_dlq = bodies(drain(sqs, dlq_url))
    return Interrupted(sent, out, in_source, in_dlq, audit.read_text())


def test_ctrl_c_during_replay_loses_nothing(
    sqs: SQSClient, aws_env: dict[str, str], tmp_path: Path
) -> None:
    run = interrupted_replay(sqs, aws_env, tmp_path, signals=1)
    moved, left = run.check_lossless()
    assert 20 <= moved < 300, "the interrupt must land mid-run"
    assert moved + left == 300  # the current batch was finished: no duplicates
    times = [
        datetime.fromisoformat(json.loads(line)["time"]) for line in run.audit_text.splitlines()
    ]
    seconds = (max(times) - min(times)).total_seconds()
    assert (moved - 10) / seconds <= 50 * 1.2  # --rate 50 (the first batch goes at once)
    assert f"moved       {moved}" in run.out


def test_second_ctrl_c_abandons_the_batch_but_loses_nothing(
    sqs: SQSClient, aws_env: dict[str, str], tmp_path: Path
) -> None:
    run = interrupted_replay(sqs, aws_env, tmp_path, signals=2)
    moved, left = run.check_lossless()
    assert 20 <= moved < 300
    assert moved + left >= 300


class InterruptedStream(io.StringIO):
    """An audit stream with a Ctrl-C landing in its n-th write: that is, after a batch
    was sent and before it was deleted from the DLQ, the worst moment."""

    def __init__(self, at_write: int) -> None:
        super().__init__()
        self._left = at_write

    def write(self, text: str) -> int:
        self._left -= 1
        if self._left == 0:
            raise KeyboardInterrupt
        return super().write(text)


def test_interrupt_between_send_and_delete_leaves_a_duplicate_not_a_loss(
    sqs: SQSClient,
) -> None:
    queue_url, dlq_url = create_queues(sqs, unique_name("dlq"), max_receives=3)
    sent = fill_many(sqs, dlq_url, 40)
    replayer = Replayer(
        sqs, dlq_url, queue_url, ReplayOptions(), audit=AuditLog(InterruptedStream(15), queue_url)
    )
    with pytest.raises(KeyboardInterrupt):
        replayer.run()
    assert replayer.summary.moved == 10  # the first batch; the second was sent, not deleted
    assert_untouched(sqs, dlq_url, 30)  # what it held is visible again at once
    in_source = bodies(drain(sqs, queue_url))
    in_dlq = bodies(drain(sqs, dlq_url))
    assert len(in_source) == len(set(in_source)) == 20
    assert set(in_source) | set(in_dlq) == sent
    assert len(set(in_source) & set(in_dlq)) == 10


# ------------------------------------------------------------------- settings and errors


def test_missing_dlq_url_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_command(capsys, "dlq", "stats", "--region", REGION)
    assert code == 2
    assert out == ""
    assert (
        err == "regworker dlq stats: missing --dlq-url: pass --dlq-url or set REGWORKER_DLQ_URL\n"
    )


def test_missing_destination_names_its_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dlq = ["--dlq-url", "http://127.0.0.1:1/000000000000/q-dlq"]
    code, _, err = run_command(capsys, "dlq", "replay", *dlq, "--region", REGION)
    assert (code, err.count("\n")) == (2, 1)
    assert "--to" in err
    assert "REGWORKER_QUEUE_URL" in err
    code, _, err = run_command(capsys, "dlq", "replay", *dlq, "--region", REGION, "--to", dlq[1])
    assert (code, err.count("\n")) == (2, 1)
    assert "must differ" in err


def test_settings_fall_back_to_the_environment(
    filled: Filled, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REGWORKER_DLQ_URL", filled.dlq_url)
    monkeypatch.setenv("REGWORKER_QUEUE_URL", filled.queue_url)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("REGWORKER_AWS_REGION", REGION)
    code, out, _ = run_command(capsys, "dlq", "replay", "--dry-run", "--json")
    assert code == 0
    assert json.loads(out)["destination"] == filled.queue_url


def test_region_follows_the_one_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """No --region is no error: REGWORKER_AWS_REGION, AWS_REGION, AWS_DEFAULT_REGION,
    the profile's region (none here: no config file), else us-east-1."""
    args = parse(["dlq", "stats", "--dlq-url", "http://q/1/dlq"]).params
    assert target_from(args, {"REGWORKER_AWS_REGION": "eu-west-3"}).region == "eu-west-3"
    assert target_from(args, {"AWS_REGION": "eu-west-1"}).region == "eu-west-1"
    assert target_from(args, {"AWS_DEFAULT_REGION": "ap-south-1"}).region == "ap-south-1"
    assert target_from(args, {}).region == "us-east-1"
    explicit = parse(
        ["dlq", "stats", "--dlq-url", "http://q/1/dlq", "--region", "sa-east-1"]
    ).params
    assert target_from(explicit, {"REGWORKER_AWS_REGION": "eu-west-3"}).region == "sa-east-1"


def test_unreachable_endpoint_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    code, _, err = run_command(
        capsys, "dlq", "stats", "--dlq-url", "http://127.0.0.1:9/000000000000/q", "--region", REGION
    )
    assert code == 1
    assert err.startswith("regworker dlq stats: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "replay", "--older-than", "5x"],
        ["dlq", "replay", "--reason", "Nope"],
        ["dlq", "replay", "--rate", "0"],
        ["dlq", "peek", "--max", "0"],
        ["dlq", "redrive", "--rate", "501"],
        ["dlq"],
    ],
)
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "Error:" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["stats", "peek", "replay", "redrive"])
def test_help_has_examples(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", action, "--help"]) == 0
    text = capsys.readouterr().out
    assert f"regworker dlq {action}" in text.split("examples:")[1]
    assert "REGWORKER_DLQ_URL" in text


def test_redrive_on_moto_says_it_is_not_supported(
    filled: Filled, sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_command(capsys, "dlq", "redrive", *filled.args("--wait"))
    assert code == 1
    assert out == ""
    assert err == (
        "regworker dlq redrive: this endpoint does not support StartMessageMoveTask (moto);"
        " use `regworker dlq replay`\n"
    )
    assert_untouched(sqs, filled.dlq_url, 8)


# ---------------------------------------------------------------------- pure functions


def test_parse_duration() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("1w") == timedelta(weeks=1)
    for bad in ("", "h", "1.5h", "10", "1h 30m", "-1h"):
        with pytest.raises(Exception, match="not a duration"):
            parse_duration(bad)


def test_escaped_prefix_is_bounded_and_escaped() -> None:
    assert escaped_prefix("abc", 40) == "abc"
    assert escaped_prefix("a\x00b\nc", 40) == "a\\x00b\\nc"
    assert len(escaped_prefix("\x00" * 100, 40)) == 40  # ten escapes of four characters
    assert len(escaped_prefix("x" * 100, 40)) == 40
    assert escaped_prefix("é\\", 40) == "\\xe9\\\\"


def dlq_message(
    reason: str | None, replay_count: int = 0, age: timedelta | None = None
) -> DlqMessage:
    """A worker's letter for ``reason``; None: a message the redrive policy moved."""
    attributes: dict[str, Any] = {REPLAY_COUNT: string(str(replay_count))}
    if reason is not None:
        attributes.update(letter_attributes("body", R(reason)))
    if age is not None:
        attributes[FAILED_AT] = string((datetime.now(UTC) - age).isoformat())
    return DlqMessage("id", "handle", "body", attributes)


def test_decide() -> None:
    now = datetime.now(UTC)
    default = ReplayOptions()
    assert decide(dlq_message("RetriesExhausted"), default, now) is Decision.MOVE
    assert decide(dlq_message(None), default, now) is Decision.MOVE
    assert decide(dlq_message("InvalidToken"), default, now) is Decision.SKIP
    assert decide(dlq_message("ExpiredToken"), default, now) is Decision.SKIP
    assert decide(dlq_message("MalformedMessage"), default, now) is Decision.SKIP
    malformed = ReplayOptions(reasons=frozenset({"MalformedMessage"}))
    assert decide(dlq_message("MalformedMessage"), malformed, now) is Decision.MOVE
    included = ReplayOptions(include_terminal=True)
    assert decide(dlq_message("MalformedMessage"), included, now) is Decision.MOVE
    named = ReplayOptions(reasons=frozenset({"ExpiredToken"}))
    assert decide(dlq_message("ExpiredToken"), named, now) is Decision.MOVE
    assert decide(dlq_message("RetriesExhausted"), named, now) is Decision.SKIP
    assert decide(dlq_message("RetriesExhausted", 3), default, now) is Decision.REFUSE
    assert decide(dlq_message("InvalidToken", 3), default, now) is Decision.SKIP
    old = ReplayOptions(older_than=timedelta(hours=1))
    assert decide(dlq_message("DisabledApi", age=timedelta(hours=2)), old, now) is Decision.MOVE
    assert decide(dlq_message("DisabledApi", age=timedelta(minutes=5)), old, now) is Decision.SKIP
    # Age unknown: no SentTimestamp, and dlq_failed_at is not the worker's own.
    assert decide(dlq_message(None, age=timedelta(hours=2)), old, now) is Decision.SKIP


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_for_long_runs_on_a_terminal() -> None:
    terminal = Terminal()
    with ProgressBar(stream=terminal, approximate=True) as progress:
        progress.update(50, 200, "moved 50")
    assert "50/~200 moved 50" in terminal.getvalue()
    assert "\n" in terminal.getvalue()
    for stream, total in [(Terminal(), 50), (io.StringIO(), 200)]:
        with ProgressBar(stream=stream, approximate=True) as quiet:
            quiet.update(10, total, "moved 10")
        assert stream.getvalue() == ""


def test_localstack_option_builds_a_localstack_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSTACK_HOST", "127.0.0.1:4599")
    args = parse(
        ["dlq", "stats", "--localstack", "--dlq-url", "http://127.0.0.1:4599/000000000000/q"]
    ).params
    target = target_from(args, {})
    assert (target.region, target.localstack) == ("us-east-1", True)
    client = sqs_client(target)
    assert client.meta.endpoint_url == "http://127.0.0.1:4599"
    assert client.meta.region_name == "us-east-1"

"""The demo's summary: what it counts and when it says OK."""

from __future__ import annotations

import json

from worker.core.events import token_sha256
from worker.core.service import RunReport
from worker.core.settings import Sink
from worker.core.tally import Tally
from worker.local.demo import Expected, summarize


def sns_event(token: str) -> dict[str, object]:
    return {"Body": json.dumps({"token_sha256": token_sha256(token)})}


def letter(reason: str) -> dict[str, object]:
    return {"MessageAttributes": {"dlq_reason": {"StringValue": reason}}}


BATCH = [
    Expected("a", "published", "token-a"),
    Expected("b", "published", "token-b"),
    Expected("c", "InvalidToken", "token-c"),
]
REPORT = RunReport(Tally(), 0, 1.0)


def test_a_repeated_event_is_counted_as_a_repeat_not_a_miss() -> None:
    events = [sns_event("token-a"), sns_event("token-b"), sns_event("token-a")]
    text, ok = summarize(BATCH, REPORT, events, [letter("InvalidToken")], Sink.SNS)
    assert ok
    assert "tokens published: 2 of 2" in text
    assert "events read back from the sink: 3 (1 repeated with the same event_id" in text
    assert "result: OK" in text


def test_a_missing_event_or_letter_is_a_mismatch() -> None:
    text, ok = summarize(BATCH, REPORT, [sns_event("token-a")], [], Sink.SNS)
    assert not ok
    assert "tokens published: 1 of 2" in text
    assert "result: MISMATCH" in text

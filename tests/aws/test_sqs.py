"""The source queue's batch answers, read entry by entry."""

from __future__ import annotations

from worker.aws.sqs import MISSING_ENTRY, BatchEntryError, entry_outcomes


def test_each_entry_gets_its_own_outcome() -> None:
    answer = {
        "Successful": [{"Id": "0"}, {"Id": "2"}],
        "Failed": [{"Id": "1", "Code": "ReceiptHandleIsInvalid", "SenderFault": True}],
    }
    first, second, third = entry_outcomes(3, answer)
    assert first is None
    assert isinstance(second, BatchEntryError)
    assert second.code == "ReceiptHandleIsInvalid"
    assert third is None


def test_an_entry_the_answer_does_not_mention_failed() -> None:
    """Neither in Successful nor in Failed: nothing says it was done, so it was not (a
    delete taken as done would leave the message to come back; SNS is read the same
    way)."""
    outcomes = entry_outcomes(2, {"Successful": [{"Id": "0"}], "Failed": []})
    assert outcomes[0] is None
    assert isinstance(outcomes[1], BatchEntryError)
    assert outcomes[1].code == MISSING_ENTRY

"""The dead letter as it is sent: the reason attached, and received attribute values
reshaped into what SendMessage accepts."""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from worker.aws.sqs_wire import ReceivedMessage
from worker.core.dead_letter import (
    REASON,
    DeadLetter,
    OutgoingLetter,
    attributes_size,
    dead_letter_attributes,
)
from worker.core.errors import DeadLetterReason

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import MessageAttributeValueTypeDef


def received(body: str = "token", **attributes: Any) -> ReceivedMessage:
    return ReceivedMessage("id-1", "handle", body, 1, attributes=MappingProxyType(attributes))


def test_reprs_show_no_body() -> None:
    message = received("tok-secret-body")
    letter = letter_of(message)
    for thing in (message, letter, OutgoingLetter.of(letter)):
        assert "tok-secret-body" not in repr(thing)


def test_attributes_named_like_the_worker_s_own_are_never_copied() -> None:
    """A sender's (or an earlier failure's) dlq_* attributes are replaced by this
    failure's, never carried: a forged dlq_reason cannot ride along."""
    forged = {"DataType": "String", "StringValue": "ExpiredToken"}
    attributes = dead_letter_attributes(
        letter_of(received(dlq_reason=forged, dlq_anything=forged, plan=forged))
    )
    assert attributes[REASON]["StringValue"] == "InvalidToken"
    assert "dlq_anything" not in attributes
    assert "plan" in attributes


def letter_of(message: ReceivedMessage) -> DeadLetter:
    return DeadLetter(message, DeadLetterReason.INVALID_TOKEN, "InvalidTokenException: no")


def test_received_list_values_are_not_sent_on() -> None:
    """Real SQS answers a receive with empty StringListValues/BinaryListValues and refuses
    them on SendMessage (list values are reserved): a letter must carry neither, or the
    DLQ would refuse it on every delivery."""
    message = received(
        correlation={
            "DataType": "String",
            "StringValue": "abc",
            "StringListValues": [],
            "BinaryListValues": [],
        },
        blob={"DataType": "Binary", "BinaryValue": b"\x00\x01", "BinaryListValues": []},
        only_lists={"DataType": "String", "StringListValues": []},
    )
    attributes = dead_letter_attributes(letter_of(message))
    assert attributes["correlation"] == {"DataType": "String", "StringValue": "abc"}
    assert attributes["blob"] == {"DataType": "Binary", "BinaryValue": b"\x00\x01"}
    assert "only_lists" not in attributes  # nothing SendMessage could take
    assert attributes[REASON]["StringValue"] == "InvalidToken"


def test_binary_values_count_toward_the_size() -> None:
    blob: MessageAttributeValueTypeDef = {"DataType": "Binary", "BinaryValue": b"x" * 1000}
    assert attributes_size({"blob": blob}) == len("blob") + len("Binary") + 1000


def test_a_letter_s_batch_size_counts_its_attributes() -> None:
    big: dict[str, str] = {"DataType": "String", "StringValue": "v" * 5000}
    outgoing = OutgoingLetter.of(letter_of(received("t", big=big)))
    assert outgoing.size >= len("t") + 5000
    assert outgoing.size == len(outgoing.body) + attributes_size(outgoing.attributes)

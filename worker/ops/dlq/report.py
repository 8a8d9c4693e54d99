"""What ``stats`` and ``peek`` report of the DLQ, and how a message is shown (the
stats table is drawn by the command line, ``worker.cli.dlq``).

Nothing here shows a token or any text of a body: tokens as a sha256 prefix only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from worker.aws.sqs_wire import QueueDepth, queue_depth
from worker.core.errors import MalformedMessage
from worker.core.request import RegistrationRequest
from worker.ops.dlq.model import DlqMessage, escaped_prefix, iso
from worker.ops.dlq.scan import scanning

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

ERROR_DISPLAY_CHARS: Final = 200


@dataclass
class TimeSpan:
    count: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None

    def add(self, moment: datetime | None) -> None:
        self.count += 1
        if moment is None:
            return
        self.oldest = moment if self.oldest is None else min(self.oldest, moment)
        self.newest = moment if self.newest is None else max(self.newest, moment)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "oldest": iso(self.oldest), "newest": iso(self.newest)}


@dataclass
class StatsReport:
    queue_url: str
    depth: QueueDepth
    by_reason: dict[str, TimeSpan] = field(default_factory=dict)
    overall: TimeSpan = field(default_factory=TimeSpan)
    unreleased: int = 0

    def add(self, message: DlqMessage) -> None:
        self.by_reason.setdefault(message.reason, TimeSpan()).add(message.failed_at)
        self.overall.add(message.failed_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "queue_url": self.queue_url,
            "approximate": {
                "visible": self.depth.visible,
                "in_flight": self.depth.in_flight,
                "delayed": self.depth.delayed,
            },
            "scanned": self.overall.count,
            "by_reason": {reason: span.to_json() for reason, span in self.ranked()},
            "oldest": iso(self.overall.oldest),
            "newest": iso(self.overall.newest),
            "not_released": self.unreleased,
        }

    def ranked(self) -> list[tuple[str, TimeSpan]]:
        return sorted(self.by_reason.items(), key=lambda item: (-item[1].count, item[0]))


def collect_stats(client: SQSClient, queue_url: str) -> StatsReport:
    report = StatsReport(queue_url, queue_depth(client, queue_url))
    with scanning(client, queue_url) as scanner:
        for batch in scanner.batches():
            for message in batch:
                report.add(message)
    report.unreleased = scanner.unreleased
    return report


def day(moment: datetime | None) -> str:
    text = iso(moment)
    return "-" if text is None else text.replace("T", " ")


def unreleased_note(count: int) -> list[str]:
    if not count:
        return []
    return [f"note: {count} message(s) could not be handed back; they reappear within a minute"]


def peek(
    client: SQSClient, queue_url: str, max_messages: int, reasons: frozenset[str] = frozenset()
) -> list[DlqMessage]:
    """Up to ``max_messages`` messages (of ``reasons``, if given), all left in the DLQ."""
    found: list[DlqMessage] = []
    with scanning(client, queue_url) as scanner:
        for batch in scanner.batches():
            found.extend(message for message in batch if not reasons or message.reason in reasons)
            if len(found) >= max_messages:
                break
    return found[:max_messages]


# What peek (and a dry run's listing) shows of a body: nothing a token could be part
# of. A body that parses shows its token as the 12-hex sha256 prefix; --json adds the
# envelope fields that are not the token, which the parser keeps short and printable:
# format, offer type, correlation id, received_at. A body that does not parse shows its
# length, the sha256 prefix of the whole body (to tell two apart, or to match one the
# web tier logged) and the parser's reason, which quotes no text of the body. No
# prefix or other slice of it, however short: a mangled body is most often a token
# with something around it, so any slice of it can be a piece of a token.


def describe_message(message: DlqMessage) -> dict[str, Any]:
    """What an operator may see of a message: never the token, no text of a bad body."""
    described: dict[str, Any] = {
        "message_id": message.message_id,
        "reason": message.reason,
        "dead_lettered_by": message.dead_lettered_by,
        "error": message.error,
        "receive_count": message.receive_count,
        "replay_count": message.replay_count,
        "failed_at": iso(message.failed_at),
        "token_ref": message.token_ref,
        "body_length": len(message.body),
        "body_sha256": message.body_ref,
    }
    request = message.request
    if isinstance(request, MalformedMessage):
        described["body_error"] = request.detail
    else:
        described["body"] = _body_fields(request)
    if message.moved_from is not None:
        described["moved_from"] = message.moved_from
    if message.ignored_attributes:
        described["ignored_attributes"] = message.ignored_attributes
    if message.group_id is not None:
        described["group_id"] = message.group_id
    return described


def _body_fields(request: RegistrationRequest) -> dict[str, str | None]:
    return {
        "format": request.body_format,
        "offer_type": request.offer_type,
        "correlation_id": request.correlation_id,
        "received_at": None if request.received_at is None else request.received_at.isoformat(),
    }


def render_message(message: DlqMessage) -> str:
    receives = "?" if message.receive_count is None else str(message.receive_count)
    request = message.request
    if message.token_ref is not None:
        body = f"token {message.token_ref}"
    else:
        body = f"malformed body of {len(message.body)} chars (sha256 {message.body_ref})"
    lines = [
        f"{message.message_id}  {message.reason}",
        f"  failed {day(message.failed_at)}, receives {receives},"
        f" replays {message.replay_count}, {body}",
    ]
    if not message.from_worker:
        origin = f" from {message.moved_from}" if message.moved_from else ""
        ignored = message.ignored_attributes
        note = f"; {ignored} dlq_* attribute(s) ignored, not the worker's" if ignored else ""
        lines.append(f"  moved by a redrive policy{origin}, not dead-lettered by the worker{note}")
    if message.error:
        error = escaped_prefix(message.error, ERROR_DISPLAY_CHARS)
        lines.append(f"  error: {error}{'...' if len(error) < len(message.error) else ''}")
    elif isinstance(request, MalformedMessage):
        lines.append(f"  does not parse: {request.detail}")
    return "\n".join(lines)

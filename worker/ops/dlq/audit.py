"""The replay's audit log: one JSON line per message sent, never the token."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TextIO

from worker.ops.dlq.model import DlqMessage


class AuditLog:
    """One JSON line per message sent: ids, reason, replay count, token hash; never the token."""

    def __init__(self, stream: TextIO | None, destination_url: str) -> None:
        self._stream = stream
        self._destination = destination_url

    def record(self, message: DlqMessage, new_message_id: str) -> None:
        if self._stream is None:
            return
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "dlq_message_id": message.message_id,
            "new_message_id": new_message_id,
            "reason": message.reason,
            "replay_count": message.replay_count + 1,
            "token_sha256": message.token_hash,
            "destination": self._destination,
        }
        self._stream.write(json.dumps(line, sort_keys=True) + "\n")

    def flush(self) -> None:
        if self._stream is not None:
            self._stream.flush()

"""What a replay did (or, in a dry run, would do), as text or JSON."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker.ops.dlq.report import unreleased_note
from worker.ops.dlq.target import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK


@dataclass
class ReplaySummary:
    destination_url: str
    dry_run: bool = False
    moved: int = 0  # in dry-run: would move
    skipped: Counter[str] = field(default_factory=Counter)  # by DLQ reason
    refused: int = 0
    failed: int = 0  # send failed: still (only) in the DLQ
    left_in_both: int = 0  # sent, but the DLQ delete failed
    unreleased: int = 0
    interrupted: bool = False
    error: str | None = None
    would_move: list[dict[str, Any]] = field(default_factory=list)
    refused_messages: list[dict[str, Any]] = field(default_factory=list)
    # Of ``skipped``, those a plain replay leaves in the DLQ (TERMINAL_REASONS and
    # EVIDENCE_REASONS), by reason.
    skipped_by_default: Counter[str] = field(default_factory=Counter)

    @property
    def examined(self) -> int:
        skipped = sum(self.skipped.values())
        return self.moved + skipped + self.refused + self.failed + self.left_in_both

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.error or self.failed or self.left_in_both:
            return EXIT_FAILURE
        return EXIT_OK

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "destination": self.destination_url,
            "dry_run": self.dry_run,
            "moved": self.moved,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_by_default": dict(sorted(self.skipped_by_default.items())),
            "refused": self.refused,
            "failed": self.failed,
            "left_in_both": self.left_in_both,
            "not_released": self.unreleased,
            "interrupted": self.interrupted,
            "error": self.error,
            # replay_count is read from each message, and its sender can set it
            "refused_messages": self.refused_messages,
        }
        if self.dry_run:
            document["would_move"] = self.would_move
        return document

    def render(self, max_replays: int) -> str:
        verb = "would move" if self.dry_run else "moved"
        skipped = ", ".join(f"{reason} {count}" for reason, count in self.skipped.most_common())
        lines = [
            f"{'dry run, nothing changed: ' if self.dry_run else ''}"
            f"{self.examined} examined -> {self.destination_url}",
            f"  {verb:<10}  {self.moved}",
            f"  {'skipped':<10}  {sum(self.skipped.values())}{'  ' + skipped if skipped else ''}",
            f"  {'refused':<10}  {self.refused}"
            + (f"  replay_count reached --max-replays {max_replays}" if self.refused else ""),
            f"  {'failed':<10}  {self.failed}" + ("  left in the DLQ" if self.failed else ""),
        ]
        if self.refused:
            lines.append(
                "  (replay_count is read from the message, and whoever sent it can set it:"
                " check the refused ones with `regworker dlq peek`, and replay them with a"
                " higher --max-replays if their tokens are good)"
            )
        lines.extend(self._skipped_by_default_note())
        if self.left_in_both:
            lines.append(
                f"  {self.left_in_both} sent but not deleted from the DLQ: they are in both"
                " queues (harmless duplicates; a rerun would replay them again)"
            )
        lines.extend(unreleased_note(self.unreleased))
        if self.interrupted:
            lines.append("interrupted: stopped early; every message is in the DLQ or the queue")
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)

    def _skipped_by_default_note(self) -> list[str]:
        if not self.skipped_by_default:
            return []
        counts = ", ".join(
            f"{reason} {count}" for reason, count in sorted(self.skipped_by_default.items())
        )
        return [
            f"  ({sum(self.skipped_by_default.values())} skipped by default: {counts}."
            " Tokens that can never resolve and bodies that can never parse stay in the DLQ;"
            " name a reason with --reason to replay it, or add --include-terminal)"
        ]

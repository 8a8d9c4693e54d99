"""The outage run's own arithmetic (bench/outage.py): holds read from worker log lines,
publish times against recovery, the waves. No services: it runs in milliseconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from chaos import Token
from outage import HoldReport, publish_timing, split_waves, summarize_logs

from worker.core.events import token_ref

T0 = 1_800_000_000.0  # epoch seconds, 2027-01-15T08:00:00Z


def line(event: str, at: float, **fields: object) -> str:
    stamp = f"2027-01-15T08:{int(at) // 60:02d}:{at % 60:09.6f}Z"
    return json.dumps({"event": event, "level": "info", "timestamp": stamp, **fields})


def test_holds_are_paired_per_worker_and_component() -> None:
    error = "UnrecognizedClientException: The security token included in the request is invalid."
    logs = {
        "worker-001": [
            "not json: a traceback line",
            line("configuration_fault", 10, component="resolve_customer", error=error),
            line("configuration_fault", 70, component="resolve_customer", elapsed_seconds=60),
            line("fault_cleared", 130, component="resolve_customer", after_seconds=120.0),
            line("configuration_fault", 200, component="resolve_customer", error="DisabledApi"),
            line("fault_cleared", 201, component="resolve_customer", after_seconds=1.0),
        ],
        "worker-002": [
            line("configuration_fault", 12, component="resolve_customer", error=error),
            line("published", 20),
        ],
    }
    summary = summarize_logs(logs, now=T0 + 300)
    assert summary.events["configuration_fault"] == 4
    assert summary.events["configuration_fault:resolve_customer"] == 4
    assert summary.events["published"] == 1
    report = HoldReport.of(summary.holds, ["resolve_customer"], T0 + 11, T0 + 125)
    # worker-002 never cleared: held from 12 s until "now", 300 s
    assert report.count == 2
    assert report.longest == 288.0
    assert report.last_cleared_after_recovery == 5.0
    assert report.not_cleared == ["worker-002 resolve_customer held 288s"]
    assert report.others == {"resolve_customer: DisabledApi": 1}
    assert HoldReport.of(summary.holds, ["sink"], T0, T0 + 300).count == 0


def test_publish_timing_takes_each_good_tokens_first_publish() -> None:
    good = [Token("ordinary", f"chaos-{n}") for n in range(3)]
    poison = Token("invalid", "invalid-1")
    tap = [
        (good[0].sha256, T0 + 5),  # before the outage
        (good[1].sha256, T0 + 20),  # during it
        (good[2].sha256, T0 + 70),  # after recovery at T0 + 60
        (good[2].sha256, T0 + 90),  # a duplicate does not move the last publish
        (poison.sha256, T0 + 95),  # poison is not a good token
    ]
    timing = publish_timing([*good, poison], tap, began_at=T0 + 10, recovered_at=T0 + 60)
    assert timing.good_tokens == 3
    assert timing.published == 3
    assert timing.published_during == 1
    assert timing.published_after == 1
    assert timing.first_after_seconds == 10.0
    assert timing.last_after_seconds == 10.0
    refs = [token_ref(token.body) for token in good]
    assert timing.last_tokens == [f"{refs[2]} +10.0s", f"{refs[1]} -40.0s", f"{refs[0]} -55.0s"]


def test_second_wave_is_the_tail_of_the_sends() -> None:
    sends = [Token("ordinary", f"chaos-{n}") for n in range(8)]
    first, second = split_waves(sends, 0.25)
    assert first == sends[:6]
    assert second == sends[6:]
    assert split_waves(sends, 0.0) == (sends, [])

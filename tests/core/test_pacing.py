"""The one spacing rule (``worker.core.pacing.Turns``) that the worker's ``Pacer`` and
the DLQ replay's ``ReplayPacer`` (tests/ops/test_dlq_pacing.py) share."""

from __future__ import annotations

import pytest

from worker.core.pacing import Turns


def test_first_turn_is_due_at_once() -> None:
    assert Turns().due(1.0) < 0


def test_a_late_wake_up_is_caught_up() -> None:
    turns = Turns()
    turns.take(turns.due(0.1), now=10.0, spacing=0.1)
    due = turns.due(0.1)
    assert due == pytest.approx(10.1)
    turns.take(due, now=10.15, spacing=0.1)  # woke 50 ms late
    assert turns.due(0.1) == pytest.approx(10.2)  # the next turn keeps the rate


def test_idle_time_banks_no_burst() -> None:
    turns = Turns()
    turns.take(turns.due(0.1), now=10.0, spacing=0.1)
    turns.take(turns.due(0.1), now=70.0, spacing=0.1)  # a quiet minute
    assert turns.due(0.1) == pytest.approx(70.1)


def test_without_catch_up_a_late_turn_is_not_made_up_for() -> None:
    turns = Turns(catch_up=False)
    turns.take(turns.due(0.1), now=10.0, spacing=0.1)
    turns.take(turns.due(0.1), now=10.15, spacing=0.1)  # woke 50 ms late
    assert turns.due(0.1) == pytest.approx(10.25)

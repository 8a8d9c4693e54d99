"""The command registry: help with no arguments, --version, a suggestion for a typo."""

from __future__ import annotations

from importlib import metadata

import pytest

from worker.cli import main


def test_no_arguments_print_the_help_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("Usage: regworker")
    assert "dlq" in out
    assert "run" in out


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"regworker {metadata.version('regworker')}"


def test_a_misspelt_command_gets_the_closest_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dql", "stats"]) == 2
    assert "unknown command 'dql'; did you mean 'dlq'?" in capsys.readouterr().err


def test_a_command_like_nothing_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zzz"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'zzz' (commands: run, " in err
    assert "did you mean" not in err

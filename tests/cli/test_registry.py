"""The command registry: help with no arguments, --version, a suggestion for a typo."""

from __future__ import annotations

import subprocess
import sys
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


def test_a_misspelt_option_gets_the_closest_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "peek", "--maxx", "3"]) == 2
    assert "No such option '--maxx'. Did you mean '--max'?" in capsys.readouterr().err


def test_the_help_imports_no_command() -> None:
    """The top-level help lists the commands from the registry's table alone."""
    probe = (
        "import sys\n"
        "from worker.cli import main\n"
        "main(['--help'])\n"
        "print([name for name in sys.modules if name.startswith('worker.cli.')])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "resolve-customer" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"


def test_an_interrupted_command_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.cli import provision

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(provision, "provision_command", interrupted)
    assert main(["provision"]) == 130
    assert "regworker: interrupted" in capsys.readouterr().err

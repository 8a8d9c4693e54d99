"""The command registry: help with no arguments, --version, a suggestion for a typo."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.support import regworker, tag, unique_name
from worker.cli import main
from worker.local.sandbox import LocalService, clean_environ

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


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


def test_every_command_reads_dotenv_under_the_environment(
    tmp_path: Path, moto: LocalService
) -> None:
    """`regworker provision --output .env` then `regworker enqueue` in the same directory,
    with nothing else set: the tool reads the queue, the endpoint and the credentials from
    .env (the environment, when it sets a variable, wins)."""
    environ = {**clean_environ(), "AWS_ENDPOINT_URL": moto.url, **LOCAL_CREDENTIALS}
    provisioned = regworker(
        ["provision", "--name", unique_name("env"), "--output", ".env"], environ, tmp_path
    )
    assert provisioned.returncode == 0, provisioned.stderr
    dotenv = (tmp_path / ".env").read_text()
    (tmp_path / ".env").write_text(
        dotenv
        + f"AWS_ENDPOINT_URL={moto.url}\n"
        + "".join(f"{key}={value}\n" for key, value in LOCAL_CREDENTIALS.items())
        + "AWS_DEFAULT_REGION=us-east-1\n"
    )
    sent = regworker(["enqueue", f"tok-{tag()}"], clean_environ(), tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent 1, failed 0")
    elsewhere = regworker(["enqueue", f"tok-{tag()}"], clean_environ(), tmp_path.parent)
    assert elsewhere.returncode == 2
    assert "REGWORKER_QUEUE_URL" in elsewhere.stderr

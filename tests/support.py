"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mypy_boto3_sqs.client import SQSClient

from worker.local.sandbox import clean_environ
from worker.ops.provision import Resources


def tag() -> str:
    """A short unique suffix, so tests sharing one emulator or queue never collide."""
    return uuid.uuid4().hex[:8]


def send_all(sqs: SQSClient, queue_url: str, bodies: Sequence[str], **extra: Any) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body, **extra)


def stop_after(seconds: float) -> asyncio.Event:
    """An event set ``seconds`` from now: a worker's ``stop``."""
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return stop


def run_cli(
    resources: Resources, env: dict[str, str], cwd: Path, *, timeout: float = 60, **settings: str
) -> subprocess.CompletedProcess[str]:
    """`regworker run --until-empty` as a process on ``resources``, start-up check kept short."""
    return subprocess.run(
        [sys.executable, "-m", "worker", "run", "--until-empty"],
        env={
            **clean_environ(),
            **env,
            **resources.settings_env(),
            "REGWORKER_WAIT_TIME_SECONDS": "1",
            "REGWORKER_STARTUP_CHECK_SECONDS": "2",
            **settings,
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The process printed exactly one line, and no log line or traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("regworker run: ")
    return lines[0]

"""The README's DLQ session, run as printed in an empty directory: every command exits 0
and prints what the README shows, once ids, times, token hashes and durations are
masked. Only the ports are changed, to free ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from worker.local.sandbox import clean_environ, free_port

ROOT = Path(__file__).resolve().parents[2]
SESSION_START = "$ moto_server -p 5151"
PRINTED_PORTS = ("5151", "8642")
MASKS = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"), "<time>"),
    (re.compile(r"token [0-9a-f]{12}"), "token <hash>"),
    (re.compile(r"resolve retries=\d+; [\d.]+s"), "resolve retries=<n>; <t>s"),
]


def session() -> list[tuple[str, list[str]]]:
    """(command, printed output lines) for each ``$`` line of the session's block."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(SESSION_START) :].split("```", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    lines = iter(block.splitlines())
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                command = command[:-1] + next(lines).strip()
            steps.append((command, []))
        elif steps:
            steps[-1][1].append(line)
    return steps


# "InvalidToken 1, ExpiredToken 1": counts by reason, listed in the order they were met.
COUNTS = re.compile(r"[A-Za-z]+ \d+(?:, [A-Za-z]+ \d+)+")


def masked(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        for pattern, mask in MASKS:
            line = pattern.sub(mask, line)
        line = COUNTS.sub(lambda found: ", ".join(sorted(found[0].split(", "))), line)
        out.append(line.rstrip())
    return sorted(line for line in out if line)  # scan order is SQS's, not the session's


def wait_for_port(port: str) -> str:
    """A bash line that waits up to 30 s for something to listen on ``port``."""
    return (
        f"for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break;"
        " sleep 0.1; done"
    )


def test_the_dlq_session_runs_as_printed(tmp_path: Path) -> None:
    ports = {printed: str(free_port()) for printed in PRINTED_PORTS}
    steps = session()
    assert len(steps) >= 9
    script = ["trap 'kill $(jobs -p) 2>/dev/null' EXIT", "sleep 0"]
    for number, (command, _) in enumerate(steps):
        for shown, port in ports.items():
            command = command.replace(shown, port)
        if command.endswith("&"):
            script.append(command)
            continue
        if command.startswith("regworker provision"):  # the stand-ins were just started
            script.extend(wait_for_port(port) for port in ports.values())
        script.append(f"{command} > out{number} 2> err{number}; echo $? > rc{number}")
    env = {
        **clean_environ(),
        "PATH": f"{Path(sys.executable).parent}:{clean_environ().get('PATH', '')}",
        "REGWORKER_HTTP_PORT": "0",  # the harness's only addition: no port to share
    }
    subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, timeout=400, check=False
    )
    for number, (command, printed) in enumerate(steps):
        if command.endswith("&"):
            continue
        error = (tmp_path / f"err{number}").read_text()
        assert (tmp_path / f"rc{number}").read_text().strip() == "0", (command, error)
        got = (tmp_path / f"out{number}").read_text().splitlines()
        if "regworker run" in command:
            got = error.splitlines()[-1:]  # the summary line; the log goes to stderr too
        if command.startswith("regworker dlq peek"):
            printed, got = printed[:1], got[:1]  # which letter comes first is SQS's choice
        for shown, port in ports.items():
            printed = [line.replace(shown, port) for line in printed]
        assert masked(got) == masked(printed), command

"""Local stand-ins for AWS, run as child processes: moto server and the
ResolveCustomer emulator. The demo, the tests and the benchmarks use them."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

START_TIMEOUT: Final = 30.0
# Dummy credentials: the local services accept any, and they can never reach AWS.
LOCAL_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


@dataclass(frozen=True)
class LocalService:
    url: str
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback only
                return
        except urllib.error.HTTPError:
            return  # it answered: it is up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url}: no answer within {timeout:.0f}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def local_env(endpoint: str, emulator: str, region: str = "us-east-1") -> dict[str, str]:
    """Standard AWS variables that point every client at the local services."""
    return {
        **LOCAL_CREDENTIALS,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING": emulator,
    }


def clean_environ() -> dict[str, str]:
    """This process's environment without AWS_* or REGWORKER_* variables, so a child
    can never reach a real account by accident."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "REGWORKER_"))
    }


@contextlib.contextmanager
def moto_server(port: int | None = None) -> Iterator[LocalService]:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_environ(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/moto-api/", process, START_TIMEOUT)
        yield LocalService(url, process)
    finally:
        _stop(process)


@contextlib.contextmanager
def emulator_server(options: Sequence[str] = ()) -> Iterator[LocalService]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker",
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=clean_environ(),
    )
    try:
        url = _read_emulator_url(process)
        _wait_http(f"{url}/_emulator/health", process, START_TIMEOUT)
        yield LocalService(url, process)
    finally:
        _stop(process)


def _read_emulator_url(process: subprocess.Popen[bytes]) -> str:
    if process.stdout is None:
        raise RuntimeError("emulator stdout is not captured")
    line = process.stdout.readline().decode().strip()
    prefix = "emulator listening on "
    if not line.startswith(prefix):
        raise RuntimeError(f"emulator did not start: {line!r}")
    return line.removeprefix(prefix)

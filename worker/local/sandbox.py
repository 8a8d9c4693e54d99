"""Local stand-ins for AWS, run as child processes: moto server, LocalStack and the
ResolveCustomer emulator; and a TCP proxy that cuts an endpoint on demand. The demo, the
tests and the benchmarks use them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

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


def use_clean_environ(**extra: str) -> None:
    """Make this process's own environment ``clean_environ()`` plus ``extra``, for a
    bench that reaches only local services. Read before it is cleared: cleared first,
    its children ran with no PATH, HOME or locale."""
    environment = {**clean_environ(), **extra}
    os.environ.clear()
    os.environ.update(environment)


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


# Loopback calls to the emulator bypass any HTTP(S)_PROXY of the environment.
_LOCAL_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _emulator_call(method: str, url: str, body: object = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the emulator, on loopback
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with _LOCAL_OPENER.open(request, timeout=10) as answer:
            parsed: dict[str, Any] = json.load(answer)
    except urllib.error.HTTPError as error:
        if error.code != 400:
            raise
        with error:
            raw = error.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        message = body.get("message") if isinstance(body, dict) else raw.decode(errors="replace")
        raise ValueError(f"{url}: the emulator refused the call: {message}") from None
    return parsed


def set_emulator_fault(base_url: str, code: str, seconds: float) -> dict[str, Any]:
    """Make every ResolveCustomer call of the emulator at ``base_url`` answer ``code``
    (e.g. "UnrecognizedClientException") for ``seconds``; replaces any active fault.
    Returns the active fault as the emulator reports it; raises ValueError if the
    emulator refuses the code or the duration."""
    answer = _emulator_call(
        "POST", f"{base_url}/_emulator/faults", {"code": code, "seconds": seconds}
    )
    fault: dict[str, Any] = answer["fault"]
    return fault


def clear_emulator_fault(base_url: str) -> None:
    """End the emulator's fault at once (a no-op when none is active)."""
    _emulator_call("DELETE", f"{base_url}/_emulator/faults")


def emulator_fault(base_url: str) -> dict[str, Any] | None:
    """The emulator's active fault with its ``seconds_left``, or None."""
    fault: dict[str, Any] | None = _emulator_call("GET", f"{base_url}/_emulator/faults")["fault"]
    return fault


# Where `make localstack` installs LocalStack: .localstack in the checkout, which is where
# the Makefile, the tests and bench/ run from. Relative, so the installed package holds no
# path into a checkout.
LOCALSTACK_VENV: Final = Path(".localstack")
LOCALSTACK_SERVICES: Final = ("sqs", "sns", "events", "sts")
LOCALSTACK_START_TIMEOUT: Final = 90.0
LOCALSTACK_STOP_TIMEOUT: Final = 10.0


def serve_localstack(port: int = 4566) -> None:
    """`make localstack-up`: LocalStack on 127.0.0.1:``port`` (LocalStack's own default,
    where ``--localstack`` looks) until Ctrl-C."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # `kill` stops LocalStack's group too
    with localstack_server(port=port) as service:
        print(f"LocalStack {service.url} is up; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            service.process.wait()


class LocalStackMissing(RuntimeError):
    """The LocalStack venv is not installed."""


@contextlib.contextmanager
def localstack_server(
    venv: Path = LOCALSTACK_VENV,
    services: Sequence[str] = LOCALSTACK_SERVICES,
    timeout: float = LOCALSTACK_START_TIMEOUT,
    port: int | None = None,
) -> Iterator[LocalService]:
    """LocalStack (installed by `make localstack`) on a loopback port (a free one unless
    given), its state and log in a temporary directory, stopped with its whole process
    group at exit."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise LocalStackMissing(
            f"LocalStack is not installed ({python} is missing): run `make localstack`"
        )
    workdir = Path(tempfile.mkdtemp(prefix="regworker-localstack-"))
    log_path = workdir / "localstack.log"
    port = port or free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(python), "-m", "localstack.runtime.main"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**clean_environ(), **_localstack_env(port, services, workdir)},
            start_new_session=True,  # its own process group, so its children stop with it
        )
    url = f"http://127.0.0.1:{port}"
    started = False
    try:
        _wait_localstack(url, process, services, timeout, log_path)
        started = True
        yield LocalService(url, process)
    finally:
        _stop_group(process)
        if started:
            shutil.rmtree(workdir, ignore_errors=True)


def _localstack_env(port: int, services: Sequence[str], workdir: Path) -> dict[str, str]:
    return {
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        # hypercorn binds the address it is given; the default (twisted) binds 0.0.0.0.
        "GATEWAY_SERVER": "hypercorn",
        # Queue URLs become http://127.0.0.1:<port>/queue/<region>/<account>/<name>:
        # they resolve offline and LocalStack finds the queue from the path alone.
        "SQS_ENDPOINT_STRATEGY": "path",
        "LOCALSTACK_HOST": f"127.0.0.1:{port}",
        "SERVICES": ",".join(services),
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        # Keep every file of this instance in its temporary directory: inside a
        # container LocalStack would otherwise share /var/lib/localstack and
        # /tmp/localstack with any other instance.
        "OVERRIDE_IN_DOCKER": "0",
        "FILESYSTEM_ROOT": str(workdir / "filesystem"),
        "LOCALSTACK_VOLUME_DIR": str(workdir / "volume"),
    }


def _wait_localstack(
    url: str,
    process: subprocess.Popen[bytes],
    services: Sequence[str],
    timeout: float,
    log_path: Path,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"LocalStack exited with {process.returncode} while starting; log: {log_path}"
            )
        if _services_available(f"{url}/_localstack/health", services):
            if not _listens_on(process.pid, int(url.rsplit(":", 1)[1])):
                raise RuntimeError(
                    f"{url}: another process answers on LocalStack's port; log: {log_path}"
                )
            return
        time.sleep(0.2)
    raise RuntimeError(f"LocalStack: services not available within {timeout:.0f}s; log: {log_path}")


def _services_available(health_url: str, services: Sequence[str]) -> bool:
    try:
        with urllib.request.urlopen(health_url, timeout=2) as answer:  # noqa: S310 - loopback
            states = json.load(answer).get("services", {})
    except (OSError, ValueError):
        return False
    return all(states.get(name) in {"available", "running"} for name in services)


def _listens_on(pid: int, port: int) -> bool:
    """Whether ``pid`` owns the listening socket on 127.0.0.1:``port``. LocalStack
    reports nothing when its port is taken, and the other process would then answer the
    health check. Linux only: elsewhere it trusts the answer."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        return True
    local = f"0100007F:{port:04X}"
    inodes = {
        fields[9]
        for fields in (line.split() for line in table.read_text().splitlines()[1:])
        if fields[1] == local and fields[3] == "0A"  # 0A: LISTEN
    }
    try:
        links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    except OSError:
        return True
    return any(f"socket:[{inode}]" in links for inode in inodes)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if LocalStack has not exited in time
    (its shutdown can hang), and always reap the leftovers of the group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=LOCALSTACK_STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# --- a TCP proxy that can cut an endpoint ---------------------------------------------


class FlakyProxy:
    """A TCP proxy on loopback that can be cut and restored, to make an endpoint
    unreachable for a while over real sockets. While cut it accepts each connection and
    closes it at once (as a load balancer with no healthy target does); ``cut`` also
    drops the connections already open. Runs on the event loop that started it."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.up = True
        self.refused = 0

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("proxy not started")
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        self.up = False
        for writer in list(self._writers):
            writer.close()

    def restore(self) -> None:
        self.up = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            self.refused += 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._writers.difference_update({writer, up_writer})

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


def _upstream_of(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


@contextlib.asynccontextmanager
async def flaky_proxy(url: str) -> AsyncIterator[FlakyProxy]:
    """A FlakyProxy in front of ``url`` (http://host:port) on the running event loop."""
    proxy = FlakyProxy(*_upstream_of(url))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


class ThreadedProxy:
    """A FlakyProxy driven from synchronous code: it runs on an event loop of its own in
    a background thread, and ``cut``/``restore`` run on that loop."""

    def __init__(self, proxy: FlakyProxy, loop: asyncio.AbstractEventLoop) -> None:
        self._proxy = proxy
        self._loop = loop

    @property
    def url(self) -> str:
        return self._proxy.url

    @property
    def refused(self) -> int:
        return self._proxy.refused

    def cut(self) -> None:
        self._call(self._proxy.cut)

    def restore(self) -> None:
        self._call(self._proxy.restore)

    def _call(self, action: Callable[[], None]) -> None:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                action()
            except BaseException as error:  # handed to the caller's thread
                done.set_exception(error)
            else:
                done.set_result(None)

        self._loop.call_soon_threadsafe(run)
        done.result(timeout=10)


@contextlib.contextmanager
def threaded_proxy(url: str) -> Iterator[ThreadedProxy]:
    """A FlakyProxy in front of ``url`` for synchronous callers (the benchmarks): one
    event loop in a daemon thread serves every connection; stopped at exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="flaky-proxy", daemon=True)
    thread.start()
    proxy = FlakyProxy(*_upstream_of(url))
    try:
        asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(timeout=10)
        yield ThreadedProxy(proxy, loop)
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

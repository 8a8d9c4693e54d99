"""The worker side by side with a reference pipeline and a naive loop, by scenario.

Everything runs on this machine: LocalStack (SQS + SNS) on the host for the whole
session, and a fresh ResolveCustomer emulator plus a fresh, uniquely named set of
queues and topic (worker.ops.provision, SNS sink) for every measured run, so runs never
see each other's messages or emulator counts. Three contenders, each a subprocess:

- worker: ``regworker run --until-empty`` at the worker's default settings unless a
  scenario says otherwise; INFO JSON logs in bench/results/compare-logs/.
- reference (bench/reference.py): 16 aiobotocore lanes of receive 10 / resolve all at
  once / one PublishBatch / one DeleteMessageBatch, none of the reliability features.
- naive (bench/naive.py): the textbook boto3 loop, one call at a time.

CPU (user + system) of each process comes from its own rusage, read with ``os.wait4``
when it is reaped, and its peak RSS from /proc (VmHWM, rusage's would count the bench
itself, forked before the exec); seconds are the process's wall time from start to exit,
drain detection included. LocalStack and the emulator share the same cores and are not
counted. Figures are printed with ratios (worker / reference) and, where a target is
set, a ``target met`` column; nothing fails the run but a scenario that crashes.

Scenarios: pipeline (throughput and CPU per message, 20 ms ResolveCustomer), latency
(pickup-to-publish at 20 msg/s offered), quota (goodput and throttling under the
emulator's TPS cap, 1 and 3 workers), mixed (every kind of body and fault; drain time
and accounting), soak (RSS and rate over a long run; not in the default set).

    .venv/bin/python bench/compare.py --quick
    .venv/bin/python bench/compare.py --scenarios pipeline,latency --json-out out.json
    .venv/bin/python bench/compare.py --scenarios soak --soak-count 20000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, NamedTuple, TypeVar

import boto3
from botocore.config import Config
from chaos import (
    REGION,
    Endpoints,
    Token,
    aws_env,
    create_table,
    dlq_reason,
    emulator_calls,
    enqueue,
)

from worker.aws.sqs_wire import drain, queue_depth
from worker.cli.run import GC_YOUNG_THRESHOLD
from worker.core.settings import Settings, Sink
from worker.local.sandbox import (
    LocalService,
    clean_environ,
    emulator_server,
    local_env,
    localstack_server,
    moto_server,
    use_clean_environ,
)
from worker.ops.provision import Resources, provision

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

BENCH_DIR: Final = Path(__file__).resolve().parent
REGWORKER: Final = Path(sys.executable).parent / "regworker"
LIFTED_CEILING: Final = 10_000
PIPELINE_IN_FLIGHT: Final = 160  # bench/reference.py's LANES x 10
# --profile: py-spy samples the pipeline runs from outside the process (100 Hz, raw
# stacks); bench/profile_summary.py reads them. Its CPU figures then include py-spy's.
PY_SPY: Final = (str(Path(sys.executable).parent / "py-spy"), "record", "-r", "100")
PY_SPY_OUT: Final = ("--format", "raw", "-o")
SETTLED: Final = frozenset({"published", "dead_lettered", "duplicate"})
ENQUEUE_THREADS: Final = 16
CPU_SAMPLE_SECONDS: Final = 0.05
ENQUEUE_CHUNK: Final = 200
LATENCY_RATE: Final = 20.0
LATENCY_WARMUP_SECONDS: Final = 2.0
RUN_TIMEOUT: Final = 900.0
T = TypeVar("T")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- measured processes -------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """What one process cost, from its rusage."""

    label: str
    seconds: float
    cpu_seconds: float
    max_rss_mb: float
    returncode: int
    started_at: float  # epoch seconds, to line up with log timestamps
    timed_out: bool

    @property
    def ended_at(self) -> float:
        return self.started_at + self.seconds

    def problem(self) -> str | None:
        if self.timed_out:
            return f"{self.label}: killed after the {self.seconds:.0f}s time limit"
        if self.returncode:
            return f"{self.label}: exit code {self.returncode}"
        return None


class Child:
    """A subprocess reaped with os.wait4 (not Popen.wait), so its rusage is kept."""

    def __init__(
        self,
        label: str,
        command: Sequence[str],
        env: dict[str, str],
        log: Path,
        cwd: Path,
        *,
        metered: bool = True,
    ) -> None:
        self.label = label
        self.log = log
        self.stdout = log.with_suffix(".out")
        self.latency_out = log.with_suffix(".latency")
        self.reaped = False
        self.started_at = time.time()
        self._started = time.monotonic()
        with log.open("wb") as err, self.stdout.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)
        # Under py-spy the pid is py-spy's: its CPU would not be the measured process's.
        self.meter = ProcessMeter(self.process.pid if metered else None)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float = RUN_TIMEOUT) -> Measured:
        timed_out = threading.Event()
        timer = threading.Timer(timeout, self._kill, args=(timed_out,))
        timer.start()
        try:
            _, status, usage = os.wait4(self.pid, 0)
        finally:
            timer.cancel()
        seconds = time.monotonic() - self._started
        self.meter.stop(exit_cpu=usage.ru_utime + usage.ru_stime)
        self.reaped = True
        self.process.returncode = os.waitstatus_to_exitcode(status)
        return Measured(
            label=self.label,
            seconds=seconds,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            max_rss_mb=self.meter.peak_rss_mb or usage.ru_maxrss / 1024,  # kilobytes on Linux
            returncode=self.process.returncode,
            started_at=self.started_at,
            timed_out=timed_out.is_set(),
        )

    def _kill(self, timed_out: threading.Event) -> None:
        # os.kill, not Popen.kill: Popen would poll, and could reap it before wait4 does.
        timed_out.set()
        self.kill()

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if not self.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def summary(self) -> dict[str, Any]:
        """The JSON line reference.py and naive.py print on stdout."""
        lines = [line for line in self.stdout.read_text().splitlines() if line.startswith("{")]
        return dict(json.loads(lines[-1])) if lines else {}  # py-spy may print after it

    def latencies(self) -> list[int]:
        if not self.latency_out.exists():
            return []
        return [int(line) for line in self.latency_out.read_text().split()]


class ProcessMeter:
    """A process's CPU seconds (user + system, /proc/PID/stat) read every
    ``CPU_SAMPLE_SECONDS`` in a thread against the wall clock, to tell what one stretch
    of the run cost (the process's start and end left out), and its peak RSS (VmHWM).
    rusage's ru_maxrss counts the forked bench process the child was before its exec,
    so a child smaller than the bench reported the bench's size. Reads nothing where
    there is no /proc, and nothing of a process's children (under --profile the pid is
    py-spy's: no CPU in flow, and the peak RSS is rusage's, py-spy's own included)."""

    def __init__(self, pid: int | None) -> None:
        self._pid = pid
        self.peak_rss_mb: float | None = None
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.samples: list[tuple[float, float]] = []  # (epoch seconds, CPU seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self, exit_cpu: float) -> None:
        """Stop reading; ``exit_cpu`` (rusage at exit, exact) is the last sample, so a
        stretch that ends just before the exit can be measured."""
        self._stop.set()
        self._thread.join()
        if self._pid is not None:
            self.samples.append((time.time(), exit_cpu))

    def between(self, start: float, end: float) -> float | None:
        """CPU seconds spent from ``start`` to ``end`` (epoch seconds), interpolated."""
        first, last = self.at(start), self.at(end)
        return None if first is None or last is None else last - first

    def at(self, moment: float) -> float | None:
        before = [(t, cpu) for t, cpu in self.samples if t <= moment]
        after = [(t, cpu) for t, cpu in self.samples if t >= moment]
        if not before or not after:
            return None
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (moment - t0) / (t1 - t0)

    def _run(self) -> None:
        while self._pid is not None:
            try:
                stat = Path(f"/proc/{self._pid}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                return
            # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
            cpu = (int(fields[11]) + int(fields[12])) / self._tick
            self.samples.append((time.time(), cpu))
            self._read_peak_rss(self._pid)
            if self._stop.wait(CPU_SAMPLE_SECONDS):
                return

    def _read_peak_rss(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            peak_kb = status_kb(pid, "VmHWM")
            if peak_kb is not None:  # None once the process is a zombie
                self.peak_rss_mb = peak_kb / 1024


class Sampler(Generic[T]):
    """Calls ``probe`` every ``interval`` seconds in a thread; keeps (monotonic, value)."""

    def __init__(self, interval: float, probe: Callable[[], T]) -> None:
        self.interval = interval
        self.probe = probe
        self.samples: list[tuple[float, T]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler[T]:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._take()  # one last look after the processes ended

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._take()

    def _take(self) -> None:
        try:
            value = self.probe()
        except Exception:
            return
        self.samples.append((time.monotonic(), value))


# --- worker logs --------------------------------------------------------------------

# Per-message outcome lines. The worker logs "message_done" (outcome, ms) per delivery,
# or, in versions where that line is DEBUG, only these outcome events at INFO; both
# shapes are read and merged by (message_id, receive_count).
OUTCOME_EVENTS: Final = {
    "published": "published",
    "dead_lettered": "dead_lettered",
    "duplicate_dropped": "duplicate",
    "requeued": "requeued",
}


@dataclass
class Delivery:
    """One delivery of one message, as the worker's log tells it."""

    outcome: str = ""
    at: float = 0.0  # epoch seconds of its last line
    ms: int | None = None  # pickup to done
    publish_ms: int | None = None  # pickup to publish answer

    @property
    def picked_up(self) -> float | None:
        return None if self.ms is None else self.at - self.ms / 1000


def log_records(path: Path) -> list[dict[str, Any]]:
    """The worker's JSON log lines (the plain summary line is skipped)."""
    records = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
    return records


def deliveries(path: Path) -> list[Delivery]:
    merged: dict[tuple[str, int], Delivery] = {}
    for record in log_records(path):
        event = record.get("event")
        if event != "message_done" and event not in OUTCOME_EVENTS:
            continue
        key = (str(record.get("message_id")), int(record.get("receive_count", 0)))
        delivery = merged.setdefault(key, Delivery())
        delivery.outcome = str(record.get("outcome") or OUTCOME_EVENTS[str(event)])
        delivery.at = max(delivery.at, epoch(record))
        if "ms" in record:
            delivery.ms = max(delivery.ms or 0, int(record["ms"]))
        if "publish_ms" in record:
            delivery.publish_ms = int(record["publish_ms"])
    return list(merged.values())


def epoch(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()


def worker_latencies(done: Sequence[Delivery]) -> tuple[list[int], str]:
    """Pickup-to-publish ms of published messages in publish order: publish_ms, or ms
    where it is absent."""
    published = sorted((d for d in done if d.outcome == "published"), key=lambda d: d.at)
    values = [d.publish_ms if d.publish_ms is not None else d.ms for d in published]
    field_used = "publish_ms" if all(d.publish_ms is not None for d in published) else "ms"
    return [v for v in values if v is not None], field_used


def outcome_counts(done: Sequence[Delivery]) -> Counter[str]:
    return Counter(d.outcome for d in done)


def log_span(done: Sequence[Delivery]) -> float | None:
    """First pickup (a line's time minus its ms) to the last settled message."""
    settled = [d.at for d in done if d.outcome in SETTLED]
    starts = [d.picked_up if d.picked_up is not None else d.at for d in done]
    if not settled:
        return None
    return max(settled) - min(starts)


# --- figures ------------------------------------------------------------------------

Series = Sequence[tuple[float, float]]


def percentile(values: Sequence[int], share: float) -> int | None:
    """Nearest-rank percentile (share in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share / 100 * len(ordered)) - 1)]


def time_at(series: Series, value: float) -> float | None:
    """When a rising series first reaches ``value``, interpolated between samples."""
    previous: tuple[float, float] | None = None
    for moment, level in series:
        if level >= value:
            if previous is None:
                return moment
            t0, v0 = previous
            return t0 + (moment - t0) * (value - v0) / (level - v0)
        previous = (moment, level)
    return None


def value_at(series: Series, moment: float) -> float | None:
    for (t0, v0), (t1, v1) in pairwise(series):
        if t0 <= moment <= t1:
            return v1 if t1 == t0 else v0 + (v1 - v0) * (moment - t0) / (t1 - t0)
    return None


def rate_between(series: Series, low: float, high: float) -> float | None:
    start, end = time_at(series, low), time_at(series, high)
    if start is None or end is None or end <= start:
        return None
    return (high - low) / (end - start)


def ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom == 0:
        return None
    return top / bottom


def met(value: float | None, limit: float, *, at_least: bool) -> str:
    if value is None:
        return "no (no figure)"
    ok = value >= limit if at_least else value <= limit
    return "yes" if ok else "no"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        size = abs(value)
        digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3
        return f"{value:.{digits}f}"
    return str(value)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # JSON only

    def add(self, *values: Any) -> None:
        self.rows.append(list(values))

    def render(self) -> str:
        cells = [self.columns, *([fmt(v) for v in row] for row in self.rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = [f"== {self.title}"]
        for n, row in enumerate(cells):
            lines.append(
                "  ".join(
                    c.rjust(w) if n and i else c.ljust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                ).rstrip()
            )
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.extend(f"  * {note}" for note in self.notes)
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        rows = [dict(zip(self.columns, row, strict=True)) for row in self.rows]
        return {"title": self.title, "rows": rows, "notes": self.notes, **self.extra}


# --- the bench ----------------------------------------------------------------------


@dataclass
class Bench:
    """Shared by every scenario: LocalStack, a boto3 session, the log directory."""

    args: argparse.Namespace
    localstack: LocalService
    dynamodb: LocalService | None
    session: boto3.Session
    sqs: SQSClient
    log_dir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    runs: int = 0
    children: list[Child] = field(default_factory=list)

    def provision(self, label: str, *, tap: bool = False) -> Resources:
        """A fresh queue, DLQ and topic for one measured run."""
        self.runs += 1
        name = f"cmp-{self.run_id}-{self.runs:02d}-{label}"[:44]
        return provision(self.session, name, Sink.SNS, tap=tap)

    def child_env(self, emulator: LocalService) -> dict[str, str]:
        endpoints = Endpoints(self.localstack, emulator, self.dynamodb)
        return {**clean_environ(), **aws_env(endpoints), **no_aws_files()}

    def worker_env(
        self, emulator: LocalService, resources: Resources, **settings: object
    ) -> dict[str, str]:
        """REGWORKER_* for one run: the resources, JSON logs at INFO, and ``settings``
        (REGWORKER_<NAME>) on top of the worker's defaults."""
        env = {**self.child_env(emulator), **resources.settings_env()}
        env["REGWORKER_LOG_LEVEL"] = "INFO"
        env["REGWORKER_LOG_FORMAT"] = "json"
        env["REGWORKER_HTTP_PORT"] = (
            "0"  # several workers on one host: no /metrics port to fight over
        )
        if self.args.worker_wait_seconds is not None:
            env["REGWORKER_WAIT_TIME_SECONDS"] = str(self.args.worker_wait_seconds)
        env.update({f"REGWORKER_{name.upper()}": str(value) for name, value in settings.items()})
        return env

    def log_path(self, scenario: str, label: str) -> Path:
        slug = "".join(c if c.isalnum() else "-" for c in label).strip("-")
        return self.log_dir / f"{self.runs:02d}-{scenario}-{slug}.log"

    def start(
        self,
        label: str,
        command: Sequence[str],
        env: dict[str, str],
        log: Path,
        *,
        profile: bool = False,
    ) -> Child:
        if profile:
            out = log.with_suffix(".profile.txt")
            say(f"[profile] {label}: py-spy raw samples to {out}")
            command = [*PY_SPY, *PY_SPY_OUT, str(out), "--", *command]
        child = Child(label, command, env, log, self.log_dir, metered=not profile)
        self.children.append(child)
        return child

    def start_worker(
        self,
        scenario: str,
        label: str,
        env: dict[str, str],
        *,
        until_empty: bool = True,
        profile: bool = False,
    ) -> Child:
        command = [str(REGWORKER), "run", *(["--until-empty"] if until_empty else [])]
        return self.start(label, command, env, self.log_path(scenario, label), profile=profile)

    def start_script(
        self,
        script: str,
        scenario: str,
        emulator: LocalService,
        resources: Resources,
        count: int,
        *extra: str,
        profile: bool = False,
        label: str = "",
    ) -> Child:
        """bench/reference.py or bench/naive.py on the run's queue and topic."""
        label = label or script.removesuffix(".py")
        log = self.log_path(scenario, label)
        command = [
            sys.executable,
            str(BENCH_DIR / script),
            *("--queue-url", resources.queue_url, "--topic-arn", resources.topic_arn),
            *("--count", str(count), "--latency-out", str(log.with_suffix(".latency"))),
            *extra,
        ]
        return self.start(label, command, self.child_env(emulator), log, profile=profile)

    def fill(self, queue_url: str, bodies: Sequence[str]) -> float:
        """Enqueue ``bodies`` from parallel threads; answers the seconds it took."""
        started = time.monotonic()
        tokens = [Token("plain", body) for body in bodies]
        chunks = [tokens[n : n + ENQUEUE_CHUNK] for n in range(0, len(tokens), ENQUEUE_CHUNK)]
        with ThreadPoolExecutor(ENQUEUE_THREADS) as pool:
            list(pool.map(lambda chunk: enqueue(self.sqs, queue_url, chunk), chunks))
        return time.monotonic() - started

    def depth(self, queue_url: str) -> int:
        return sum(queue_depth(self.sqs, queue_url))

    def kill_all(self) -> None:
        for child in self.children:
            if not child.reaped:
                child.kill()
                child.wait(timeout=30)


def no_aws_files() -> dict[str, str]:
    """No shared config or credentials file: nothing can reach a real account."""
    return {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def plain_bodies(count: int) -> list[str]:
    """Distinct plain tokens (letters, digits, dashes), new ones on every call."""
    run = uuid.uuid4().hex[:8]
    return [f"bench-{run}-{n}" for n in range(count)]


@contextlib.contextmanager
def open_bench(args: argparse.Namespace) -> Iterator[Bench]:
    log_dir = Path(args.log_dir).resolve()
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    use_clean_environ(**no_aws_files())
    with contextlib.ExitStack() as stack:
        say("starting LocalStack ...")
        localstack = stack.enter_context(localstack_server())
        dynamodb = None
        if args.idempotency and "pipeline" in args.scenarios:
            dynamodb = stack.enter_context(moto_server())
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb.url
        # The bench itself never calls ResolveCustomer: each run's emulator is in the
        # children's environment only (Bench.child_env), so this one points nowhere.
        os.environ.update(local_env(localstack.url, "http://127.0.0.1:9", REGION))
        session = boto3.Session(region_name=REGION)
        sqs = session.client("sqs", config=Config(max_pool_connections=ENQUEUE_THREADS * 2))
        bench = Bench(args, localstack, dynamodb, session, sqs, log_dir)
        try:
            yield bench
        finally:
            bench.kill_all()


# --- pipeline -----------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineRun:
    label: str
    count: int
    measured: Measured
    processed: int
    left: int
    flow_seconds: float | None  # first message picked up to last publish answered
    flow_cpu_seconds: float | None  # the process's CPU over that stretch

    @property
    def rate(self) -> float:
        return self.count / self.measured.seconds

    @property
    def rate_in_flow(self) -> float | None:
        if not self.flow_seconds:
            return None
        return self.count / self.flow_seconds

    @property
    def cpu_ms_per_message(self) -> float:
        return self.measured.cpu_seconds * 1000 / self.count

    @property
    def cpu_ms_in_flow(self) -> float | None:
        if self.flow_cpu_seconds is None:
            return None
        return self.flow_cpu_seconds * 1000 / self.count


def pipeline(bench: Bench) -> Table:
    """3000 plain tokens (default) through each contender, 20 ms ResolveCustomer. With
    ``--rounds N`` the worker and the reference alternate N times, each round's ratios
    taken within the round; the notes give the medians (the machine is noisy)."""
    tokens = bench.args.tokens
    tables = []
    for round_number in range(1, bench.args.rounds + 1):
        runs = [pipeline_worker(bench, "worker", tokens)]
        if bench.args.idempotency:
            runs.append(pipeline_worker(bench, "worker+idempotency", tokens, idempotency=True))
        reference = pipeline_script(bench, "reference.py", tokens)
        # The same collector setting as the worker's, for a like-for-like CPU figure.
        tuned = pipeline_script(
            bench,
            "reference.py",
            tokens,
            "--young-gc-threshold",
            str(GC_YOUNG_THRESHOLD),
            label="reference, GC as worker",
        )
        # And the worker's requests too (the attributes it asks of each message, those
        # each event carries): what is left is the worker's own work.
        wired = pipeline_script(
            bench,
            "reference.py",
            tokens,
            "--young-gc-threshold",
            str(GC_YOUNG_THRESHOLD),
            "--worker-wire",
            label="reference, GC and wire as worker",
        )
        if round_number == 1:
            runs.append(pipeline_script(bench, "naive.py", max(10, tokens // 10)))
        table = pipeline_table(tokens, [*runs, reference, tuned, wired], reference)
        if not bench.args.profile:  # py-spy slows the two it samples, not these rows
            gc_setting = f"the worker's young-generation GC threshold, {GC_YOUNG_THRESHOLD}"
            table.notes.append(like_for_like(runs[0], tuned, gc_setting))
            table.notes.append(
                like_for_like(
                    runs[0],
                    wired,
                    f"{gc_setting}, and the worker's requests: receives ask for the message"
                    " attributes the worker reads, events carry their SNS message attributes",
                )
            )
        tables.append(table)
    return merge_rounds(tables)


def like_for_like(worker: PipelineRun, matched: PipelineRun, what: str) -> str:
    whole = ratio(worker.cpu_ms_per_message, matched.cpu_ms_per_message)
    flowing = ratio(worker.cpu_ms_in_flow, matched.cpu_ms_in_flow)
    return (
        f"{worker.label} / {matched.label}: CPU ratio {fmt(whole)}, in flow {fmt(flowing)}"
        f" (the reference with {what})"
    )


def merge_rounds(tables: Sequence[Table]) -> Table:
    """One table with every round's rows (labelled ``#n`` after the first), and the
    median ratios of the worker rows in the notes."""
    merged = tables[0]
    for number, table in enumerate(tables[1:], start=2):
        merged.rows += [[f"{row[0]} #{number}", *row[1:]] for row in table.rows]
        merged.notes += [f"#{number}: {note}" for note in table.notes if note not in merged.notes]
    if len(tables) > 1:
        columns = merged.columns
        rate, cpu = columns.index("msg/s ratio"), columns.index("CPU ratio")
        workers = [row for row in merged.rows if str(row[0]).split(" ")[0] == "worker"]
        merged.notes.insert(
            0,
            f"median over {len(tables)} rounds: msg/s ratio"
            f" {statistics.median(float(r[rate]) for r in workers):.2f},"
            f" CPU ratio {statistics.median(float(r[cpu]) for r in workers):.2f}",
        )
    return merged


def pipeline_worker(
    bench: Bench, label: str, count: int, *, idempotency: bool = False
) -> PipelineRun:
    with emulator_server(["--latency-ms", "20"]) as emulator:
        resources = bench.provision("pipe-worker")
        # Flow control stays on, started at the lifted ceiling: this measures the
        # pipeline, not the ramp up to an unknown quota (the quota scenario does that).
        # And as many messages in hand as the reference has (16 lanes of 10): the
        # default of 50 is for a ceiling of 20/s, where the intake horizon holds fewer.
        settings: dict[str, object] = {
            "resolve_rate_limit": LIFTED_CEILING,
            "resolve_start_rate": LIFTED_CEILING,
            "max_in_flight": PIPELINE_IN_FLIGHT,
        }
        if idempotency:
            settings["idempotency_table"] = f"{resources.queue_url.rsplit('/', 1)[1]}-idem"
            create_table(bench.session, str(settings["idempotency_table"]))
        env = bench.worker_env(emulator, resources, **settings)
        filled = bench.fill(resources.queue_url, plain_bodies(count))
        say(f"[pipeline] {label}: {count} tokens enqueued in {filled:.1f}s; running")
        child = bench.start_worker("pipeline", label, env, profile=bench.args.profile)
        measured = child.wait()
        done = deliveries(child.log)
        published = outcome_counts(done)["published"]
        left = bench.depth(resources.queue_url)
        return PipelineRun(label, count, measured, published, left, *in_flow(child, flow(done)))


def flow(done: Sequence[Delivery]) -> tuple[float, float] | None:
    """First pickup and last publish answered (epoch seconds), from the worker's
    ``published`` lines (logged when the publish answered, with ``publish_ms`` since the
    handling began)."""
    published = [d for d in done if d.outcome == "published" and d.publish_ms is not None]
    if not published:
        return None
    first = min(d.at - (d.publish_ms or 0) / 1000 for d in published)
    return first, max(d.at for d in published)


def in_flow(child: Child, window: tuple[float, float] | None) -> tuple[float | None, float | None]:
    """The seconds of the flow ``window`` and the CPU seconds the process spent in it."""
    if window is None:
        return None, None
    start, end = window
    return end - start, child.meter.between(start, end)


def pipeline_script(
    bench: Bench, script: str, count: int, *extra: str, label: str = ""
) -> PipelineRun:
    label = label or script.removesuffix(".py")
    with emulator_server(["--latency-ms", "20"]) as emulator:
        resources = bench.provision(f"pipe-{script.removesuffix('.py')}")
        filled = bench.fill(resources.queue_url, plain_bodies(count))
        say(f"[pipeline] {label}: {count} tokens enqueued in {filled:.1f}s; running")
        profile = bench.args.profile and script == "reference.py" and not extra
        child = bench.start_script(
            script, "pipeline", emulator, resources, count, *extra, profile=profile, label=label
        )
        measured = child.wait()
        summary = child.summary()
        processed = int(summary.get("processed", 0))
        window = summary.get("flow")
        left = bench.depth(resources.queue_url)
        return PipelineRun(
            label,
            count,
            measured,
            processed,
            left,
            *in_flow(child, (float(window[0]), float(window[1])) if window else None),
        )


def pipeline_table(tokens: int, runs: Sequence[PipelineRun], reference: PipelineRun) -> Table:
    table = Table(
        f"pipeline: plain tokens, ResolveCustomer +20 ms, no TPS cap ({tokens} tokens;"
        " naive gets a tenth)",
        [
            "contender",
            "messages",
            "done",
            "left",
            "seconds",
            "msg/s",
            "CPU ms/msg",
            "peak RSS MB",
            "msg/s in flow",
            "CPU ms/msg in flow",
            "msg/s ratio",
            "in-flow ratio",
            "CPU ratio",
            "in-flow CPU ratio",
            "target met",
        ],
    )
    for run in runs:
        rate_ratio = ratio(run.rate, reference.rate)
        flow_ratio = ratio(run.rate_in_flow, reference.rate_in_flow)
        cpu_ratio = ratio(run.cpu_ms_per_message, reference.cpu_ms_per_message)
        flow_cpu_ratio = ratio(run.cpu_ms_in_flow, reference.cpu_ms_in_flow)
        target = "-"
        if run.label.startswith("worker"):
            misses = [
                name
                for name, ok in (
                    ("msg/s", met(rate_ratio, 0.9, at_least=True) == "yes"),
                    ("CPU", met(cpu_ratio, 1.15, at_least=False) == "yes"),
                )
                if not ok
            ]
            target = "yes" if not misses else "no: " + ", ".join(misses)
        table.add(
            run.label,
            run.count,
            run.processed,
            run.left,
            run.measured.seconds,
            run.rate,
            run.cpu_ms_per_message,
            run.measured.max_rss_mb,
            run.rate_in_flow,
            run.cpu_ms_in_flow,
            rate_ratio,
            flow_ratio,
            cpu_ratio,
            flow_cpu_ratio,
            target,
        )
        if problem := run.measured.problem():
            table.notes.append(problem)
    table.notes.append(
        "msg/s = messages / process wall time (start to exit, drain detection included);"
        " ratios are worker / reference; targets: msg/s ratio >= 0.9, CPU ratio <= 1.15"
    )
    table.notes.append(
        "msg/s in flow = messages / (last publish answered - first message picked up):"
        " the pipeline without the process's start (imports, clients, the worker's"
        " start-up check) and end (the worker's --until-empty detection, an empty 1 s"
        " poll then the queue's depth; the reference stops at its --count); CPU ms/msg"
        " in flow is the process's CPU over that stretch (/proc, sampled every"
        f" {CPU_SAMPLE_SECONDS}s); for information, the targets use the whole process"
    )
    return table


# --- latency ------------------------------------------------------------------------


def offer(sqs: SQSClient, queue_url: str, bodies: Sequence[str], rate: float) -> float:
    """Send one message at a time at a steady pace; answers how late the last one was."""
    started = time.monotonic()
    for n, body in enumerate(bodies):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    return time.monotonic() - (started + (len(bodies) - 1) / rate)


def offered_run(
    bench: Bench, child: Child, queue_url: str, count: int, *, stop_worker: bool = False
) -> Measured:
    """Let the contender come up, offer ``count`` messages at LATENCY_RATE, reap it.
    ``stop_worker``: the contender is a worker without --until-empty (an empty queue
    before the offer would end that at once): SIGTERM once all ``count`` are settled."""
    time.sleep(LATENCY_WARMUP_SECONDS)
    lateness: list[float] = []
    bodies = plain_bodies(count)
    sender = threading.Thread(
        target=lambda: lateness.append(offer(bench.sqs, queue_url, bodies, LATENCY_RATE))
    )
    sender.start()
    sender.join()
    if lateness and lateness[0] > 1:
        say(f"[latency] the offer ran {lateness[0]:.1f}s behind its schedule")
    if stop_worker:
        deadline = time.monotonic() + 300
        while len(deliveries(child.log)) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        child.kill(signal.SIGTERM)
    return child.wait(timeout=count / LATENCY_RATE + 300)


def latency(bench: Bench) -> Table:
    """20 msg/s offered for 15 s (default) while the contender runs; pickup-to-publish."""
    count = int(bench.args.latency_seconds * LATENCY_RATE)
    table = Table(
        f"latency: {LATENCY_RATE:.0f} msg/s offered for {bench.args.latency_seconds:.0f}s"
        f" ({count} messages), ResolveCustomer +20 ms",
        [
            "contender",
            "measured",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p99 2nd half",
            "CPU ms/msg",
            "target met",
        ],
    )
    workers: list[tuple[str, dict[str, object]]] = [
        ("worker (defaults)", {}),
        (
            "worker (ceiling lifted)",
            {"resolve_rate_limit": LIFTED_CEILING, "resolve_start_rate": LIFTED_CEILING},
        ),
    ]
    for label, settings in workers:
        latency_worker(bench, table, label, count, settings)
    latency_reference(bench, table, count)
    table.notes.append(
        "target: worker p99 <= 20 + 50 ms; worker figures are publish_ms from its log"
        " (ms where publish_ms is absent); p99 2nd half: the later half of the messages"
        " in publish order, without the start-up"
    )
    ceiling = Settings.model_fields["resolve_rate_limit"].default
    table.notes.append(
        f"ResolveCustomer ceiling: the default {ceiling:g}/s (the offered rate itself, so"
        f" not light load for it), or lifted to {LIFTED_CEILING}/s and started there;"
        " workers run without --until-empty and get SIGTERM once all are published"
    )
    return table


def latency_worker(
    bench: Bench, table: Table, label: str, count: int, settings: dict[str, object]
) -> None:
    with emulator_server(["--latency-ms", "20"]) as emulator:
        resources = bench.provision("lat-worker")
        env = bench.worker_env(emulator, resources, **settings)
        child = bench.start_worker("latency", label, env, until_empty=False)
        measured = offered_run(bench, child, resources.queue_url, count, stop_worker=True)
    values, field_used = worker_latencies(deliveries(child.log))
    latency_row(table, label, measured, values, count, target=True)
    if field_used != "publish_ms":
        table.notes.append(f"{label}: no publish_ms in its log; used ms (pickup to delete)")


def latency_reference(bench: Bench, table: Table, count: int) -> None:
    with emulator_server(["--latency-ms", "20"]) as emulator:
        resources = bench.provision("lat-reference")
        idle = ("--idle-receives", "0")  # stop on the count: the offer trickles in
        child = bench.start_script("reference.py", "latency", emulator, resources, count, *idle)
        measured = offered_run(bench, child, resources.queue_url, count)
    latency_row(table, "reference", measured, child.latencies(), count, target=False)


def latency_row(
    table: Table, label: str, measured: Measured, values: list[int], count: int, *, target: bool
) -> None:
    p99 = percentile(values, 99)
    table.add(
        label,
        f"{len(values)}/{count}",
        percentile(values, 50),
        p99,
        max(values, default=None),
        percentile(values[len(values) // 2 :], 99),
        measured.cpu_seconds * 1000 / count,
        met(p99, 70, at_least=False) if target else "-",
    )
    if problem := measured.problem():
        table.notes.append(problem)


# --- quota --------------------------------------------------------------------------


class QuotaPoint(NamedTuple):
    success: int
    throttled: int


def quota(bench: Bench) -> Table:
    """The emulator caps ResolveCustomer at Q calls/s; 1 and 3 workers drain Q*60 tokens."""
    per_q = bench.args.quota_seconds
    table = Table(
        f"quota: emulator --tps Q, +20 ms; N = Q*{per_q} tokens; worker ceiling 10*Q",
        [
            "Q",
            "workers",
            "N",
            "wall s",
            "goodput/s",
            "goodput/Q",
            "throttled/published",
            "steady throttled/published",
            "target met",
        ],
    )
    for tps in (5, 20):
        for workers in (1, 3):
            quota_run(bench, table, tps, workers, tps * per_q)
    table.notes.append(
        "goodput = successful ResolveCustomer calls/s between 10% and 90% of N done"
        " (emulator stats sampled every 0.5 s); throttled/published = ThrottlingException"
        " over success, overall and in that steady part"
    )
    table.notes.append(
        "targets: goodput/Q >= 0.9 (1 worker), >= 0.85 (3 workers); steady throttled/published"
        " <= 0.1"
    )
    return table


def quota_run(bench: Bench, table: Table, tps: int, workers: int, count: int) -> None:
    with emulator_server(["--tps", str(tps), "--latency-ms", "20"]) as emulator:
        resources = bench.provision(f"quota-{tps}-{workers}")
        env = bench.worker_env(emulator, resources, resolve_rate_limit=10 * tps)
        filled = bench.fill(resources.queue_url, plain_bodies(count))
        say(f"[quota] Q={tps}, {workers} worker(s): {count} tokens enqueued in {filled:.1f}s")
        children = [
            bench.start_worker("quota", f"Q{tps}-w{workers}-{n + 1}", env) for n in range(workers)
        ]
        started = time.monotonic()

        def probe() -> QuotaPoint:
            calls = emulator_calls(emulator)
            return QuotaPoint(calls.get("success", 0), calls.get("ThrottlingException", 0))

        with Sampler(0.5, probe) as sampler:
            measured = [child.wait(timeout=count / tps * 5 + 300) for child in children]
        wall = time.monotonic() - started
    quota_row(table, tps, workers, count, wall, sampler.samples)
    table.notes.extend(p for m in measured if (p := m.problem()))


def quota_row(
    table: Table,
    tps: int,
    workers: int,
    count: int,
    wall: float,
    samples: Sequence[tuple[float, QuotaPoint]],
) -> None:
    done: Series = [(t, p.success) for t, p in samples]
    throttled: Series = [(t, p.throttled) for t, p in samples]
    low, high = 0.1 * count, 0.9 * count
    start, end = time_at(done, low), time_at(done, high)
    goodput = rate_between(done, low, high)
    steady = None
    if start is not None and end is not None:
        before, after = value_at(throttled, start), value_at(throttled, end)
        if before is not None and after is not None:
            steady = (after - before) / (high - low)
    final = samples[-1][1] if samples else QuotaPoint(0, 0)
    overall = ratio(final.throttled, final.success)
    goal = 0.9 if workers == 1 else 0.85
    good = met(ratio(goodput, tps), goal, at_least=True) == "yes"
    calm = met(steady, 0.1, at_least=False) == "yes"
    target = (
        "yes"
        if good and calm
        else "no: "
        + ", ".join(name for name, ok in (("goodput", good), ("throttling", calm)) if not ok)
    )
    table.add(tps, workers, count, wall, goodput, ratio(goodput, tps), overall, steady, target)


# --- mixed --------------------------------------------------------------------------

# Bodies worker/core/request.py refuses ("<n>" makes each one distinct).
MALFORMED: Final = (
    "   ",
    '{"registration_token": 5}',
    "not a token <n>",
    '{"offer_type": "free-trial", "correlation_id": "c-<n>"}',
    "[1, 2, 3, <n>]",
    '{"registration_token": "a-<n>", "registration_token": "b-<n>"}',
    "x-amzn-marketplace-token=a-<n>&x-amzn-marketplace-token=b-<n>",
    '{"registration_token": "tok-<n>", "unknown": 1}',
    "{not json <n>",
    "x-amzn-marketplace-token=ab+cd-<n>&x-amzn-marketplace-offer-type=free-trial",
)
MIXED_KINDS: Final = {
    "plain": 300,
    "throttle": 20,
    "error": 20,
    "form": 10,
    "json": 10,
    "rejected": 50,
    "malformed": 10,
}
MIXED_PUBLISHED_KINDS: Final = frozenset({"plain", "throttle", "error", "form", "json"})


def mixed_body(kind: str, run: str, n: int) -> str:
    name = f"{run}-{n:04d}"
    if kind == "form":
        return f"x-amzn-marketplace-token=form-{name}&x-amzn-marketplace-offer-type=free-trial"
    if kind == "json":
        return json.dumps({"registration_token": f"json-{name}", "correlation_id": f"c-{n}"})
    if kind == "rejected":
        return f"{('invalid', 'expired', 'disabled')[n % 3]}-{name}"
    if kind == "malformed":
        return MALFORMED[n % len(MALFORMED)].replace("<n>", name)
    prefix = {"plain": "plain", "throttle": "throttle-2", "error": "error-2"}[kind]
    return f"{prefix}-{name}"


def mixed_bodies(order: str, seed: int = 1) -> list[str]:
    """``listed``: in MIXED_KINDS order (300 plain, then the throttle-2- tokens, ...), as
    the batch was first measured; ``shuffled``: every kind spread over the whole run."""
    run = uuid.uuid4().hex[:6]
    bodies = [mixed_body(kind, run, n) for kind, count in MIXED_KINDS.items() for n in range(count)]
    if order == "shuffled":
        random.Random(seed).shuffle(bodies)
    return bodies


@dataclass(frozen=True)
class MixedRun:
    measured: Measured
    done: list[Delivery]
    events: list[dict[str, Any]]
    dlq_reasons: Counter[str]
    left: int
    calls: dict[str, int]


def mixed(bench: Bench) -> Table:
    """420 messages of every kind, 10% of ResolveCustomer calls fail, default settings."""
    order = bench.args.mixed_order
    bodies = mixed_bodies(order)
    with emulator_server(["--fault-rate", "0.1", "--seed", "1"]) as emulator:
        resources = bench.provision("mixed", tap=True)
        env = bench.worker_env(emulator, resources)
        if order == "listed":  # one sender, ten at a time, so the queue keeps the order
            started = time.monotonic()
            enqueue(bench.sqs, resources.queue_url, [Token("plain", body) for body in bodies])
            filled = time.monotonic() - started
        else:
            filled = bench.fill(resources.queue_url, bodies)
        say(f"[mixed] {len(bodies)} messages enqueued in {filled:.1f}s; running the worker")
        child = bench.start_worker("mixed", "worker", env)
        measured = child.wait()
        run = MixedRun(
            measured,
            deliveries(child.log),
            [
                json.loads(m.get("Body", "{}"))
                for m in drain(bench.sqs, resources.tap_queue_url, empty_polls=3)
            ],
            Counter(dlq_reason(m) for m in drain(bench.sqs, resources.dlq_url, empty_polls=3)),
            bench.depth(resources.queue_url),
            emulator_calls(emulator),
        )
    return mixed_table(len(bodies), run, order)


def mixed_table(count: int, run: MixedRun, order: str) -> Table:
    ceiling = float(Settings.model_fields["resolve_rate_limit"].default)
    ideal = count / ceiling
    table = Table(
        f"mixed: {count} messages of every kind ({order}), --fault-rate 0.1, worker"
        f" defaults (ceiling {ceiling:g}/s)",
        ["measure", "value", "target met"],
    )
    drain = run.measured.seconds
    active = log_span(run.done)
    table.add("drain s (process start to exit)", drain, "-")
    table.add("drain s (first pickup to last settled, from the log)", active, "-")
    table.add(f"N / ceiling s ({count} / {ceiling:g})", ideal, "-")
    table.add("ratio (process)", drain / ideal, met(drain / ideal, 1.5, at_least=False))
    table.add(
        "ratio (log span)", ratio(active, ideal), met(ratio(active, ideal), 1.5, at_least=False)
    )
    mixed_accounting(table, count, run)
    table.add("CPU ms/msg", run.measured.cpu_seconds * 1000 / count, "-")
    table.add("peak RSS MB", run.measured.max_rss_mb, "-")
    table.notes.append(f"DLQ by reason: {listing(run.dlq_reasons)}")
    table.notes.append(f"ResolveCustomer calls: {listing(run.calls)}")
    table.notes.append(f"worker outcomes (per delivery): {listing(outcome_counts(run.done))}")
    if problem := run.measured.problem():
        table.notes.append(problem)
    return table


def mixed_accounting(table: Table, count: int, run: MixedRun) -> None:
    published = len({event["event_id"] for event in run.events})
    dead = sum(run.dlq_reasons.values())
    should_publish = sum(MIXED_KINDS[kind] for kind in MIXED_PUBLISHED_KINDS)
    table.add(f"published (distinct event_id; {should_publish} expected)", published, "-")
    table.add(f"in DLQ ({count - should_publish} expected)", dead, "-")
    table.add(
        f"published + DLQ (= {count})",
        published + dead,
        "yes" if published + dead == count else "no",
    )
    table.add("duplicate events", len(run.events) - published, "-")
    table.add("left in the source queue", run.left, "-")


def listing(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


# --- soak ---------------------------------------------------------------------------


class SoakPoint(NamedTuple):
    done: int
    rss_kb: int


def rss_kb(pid: int) -> int:
    rss = status_kb(pid, "VmRSS")
    if rss is None:
        raise ProcessLookupError(pid)
    return rss


def status_kb(pid: int, key: str) -> int | None:
    """A kB figure of /proc/PID/status (VmRSS, VmHWM); None if the line is not there."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def soak(bench: Bench) -> Table:
    """One worker, ceiling lifted, ResolveCustomer +5 ms, --soak-count tokens queued first;
    with --soak-fault-rate, that share of the calls answers a 5xx, retried in place: every
    retry raises and catches exceptions, the garbage the collector is for."""
    count = bench.args.soak_count
    faults = bench.args.soak_fault_rate
    with emulator_server(["--latency-ms", "5", "--fault-rate", str(faults)]) as emulator:
        resources = bench.provision("soak")
        env = bench.worker_env(
            emulator,
            resources,
            resolve_rate_limit=LIFTED_CEILING,
            resolve_start_rate=LIFTED_CEILING,
        )
        filled = bench.fill(resources.queue_url, plain_bodies(count))
        say(f"[soak] {count} tokens enqueued in {filled:.1f}s ({count / filled:.0f}/s); running")
        child = bench.start_worker("soak", "worker", env)

        def probe() -> SoakPoint:
            rss = rss_kb(child.pid)
            return SoakPoint(count - bench.depth(resources.queue_url), rss)

        with Sampler(1.0, probe) as sampler:
            measured = child.wait(timeout=max(RUN_TIMEOUT, count / 10))
    return soak_table(count, measured, sampler.samples, faults)


def soak_table(
    count: int,
    measured: Measured,
    samples: Sequence[tuple[float, SoakPoint]],
    fault_rate: float = 0.0,
) -> Table:
    mark = min(10_000, count // 2)
    done: Series = [(t, p.done) for t, p in samples]
    at_mark = next((p.rss_kb / 1024 for _, p in samples if p.done >= mark), None)
    at_end = samples[-1][1].rss_kb / 1024 if samples else None
    first = rate_between(done, 0.01 * count, 0.1 * count)
    last = rate_between(done, 0.9 * count, count)
    table = Table(
        f"soak: {count} plain tokens, ResolveCustomer +5 ms"
        f"{f', {fault_rate:.0%} of calls a 5xx' if fault_rate else ''}, one worker, ceiling lifted",
        ["measure", "value", "target met"],
    )
    table.add("seconds (process)", measured.seconds, "-")
    table.add("msg/s (process)", count / measured.seconds, "-")
    table.add("CPU ms/msg", measured.cpu_seconds * 1000 / count, "-")
    table.add("peak RSS MB (VmHWM)", measured.max_rss_mb, "-")
    table.add(f"RSS MB at {mark} done", at_mark, "-")
    table.add("RSS MB at the end (last sample)", at_end, "-")
    table.add(
        "RSS end / mark", ratio(at_end, at_mark), met(ratio(at_end, at_mark), 1.10, at_least=False)
    )
    table.add("msg/s, first 10% (1% to 10%)", first, "-")
    table.add("msg/s, last 10% (90% to 100%)", last, "-")
    table.add("last / first rate", ratio(last, first), "-")
    table.notes.append(
        "done = N - queue depth (visible + in flight + delayed), sampled every second with VmRSS"
    )
    if problem := measured.problem():
        table.notes.append(problem)
    start = samples[0][0] if samples else 0.0
    table.extra["samples"] = [
        {"t": round(t - start, 1), "done": p.done, "rss_mb": round(p.rss_kb / 1024, 1)}
        for t, p in samples
    ]
    return table


# --- command line -------------------------------------------------------------------

SCENARIOS: Final[dict[str, Callable[[Bench], Table]]] = {
    "pipeline": pipeline,
    "latency": latency,
    "quota": quota,
    "mixed": mixed,
    "soak": soak,
}
DEFAULT_SCENARIOS: Final = "pipeline,latency,quota,mixed"


def scenario_list(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown) or '(none)'};"
            f" choose from {', '.join(SCENARIOS)}"
        )
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--scenarios",
        type=scenario_list,
        default=scenario_list(DEFAULT_SCENARIOS),
        help=f"comma list of {', '.join(SCENARIOS)} (default {DEFAULT_SCENARIOS})",
    )
    parser.add_argument("--tokens", type=int, help="pipeline tokens (3000; --quick 600)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="pipeline: worker and reference alternate N times"
    )
    parser.add_argument(
        "--mixed-order",
        choices=("listed", "shuffled"),
        default="listed",
        help="mixed batch order: the kinds one after another (default) or shuffled",
    )
    parser.add_argument("--soak-count", type=int, help="soak tokens (100000; --quick 5000)")
    parser.add_argument(
        "--soak-fault-rate",
        type=float,
        default=0.0,
        help="soak: share of ResolveCustomer calls the emulator answers with a 5xx (%(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: pipeline 600 tokens, quota N = Q*20, latency 5 s, soak 5000",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="pipeline: run the worker and the reference under py-spy (bench/profile_summary.py)",
    )
    parser.add_argument(
        "--idempotency",
        action="store_true",
        help="pipeline: also a worker with a DynamoDB idempotency table (moto server)",
    )
    parser.add_argument(
        "--worker-wait-seconds",
        type=int,
        help="REGWORKER_WAIT_TIME_SECONDS for the workers (default: the worker's own, 20;"
        " latency always uses the default)",
    )
    parser.add_argument("--json-out", type=Path, metavar="FILE", help="write every table as JSON")
    parser.add_argument(
        "--log-dir", default="bench/results/compare-logs", help="process logs (%(default)s)"
    )
    args = parser.parse_args(argv)
    args.tokens = args.tokens or (600 if args.quick else 3000)
    args.soak_count = args.soak_count or (5000 if args.quick else 100_000)
    args.quota_seconds = 20 if args.quick else 60
    args.latency_seconds = 5.0 if args.quick else 15.0
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario asked for, in order: a table each (or the error it raised)."""
    results: dict[str, Any] = {}
    with open_bench(args) as bench:
        for name in args.scenarios:
            say(f"--- scenario {name}")
            try:
                table = SCENARIOS[name](bench)
            except Exception as error:
                traceback.print_exc()
                bench.kill_all()
                results[name] = {"error": repr(error)}
                print(f"== {name}: FAILED: {error!r}\n", flush=True)
                continue
            results[name] = table.as_json()
            print(table.render() + "\n", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    if args.json_out is not None:
        options = {key: value for key, value in vars(args).items() if key != "json_out"}
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        document = {"options": options, "scenarios": results}
        args.json_out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 1 if any("error" in result for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

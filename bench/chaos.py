"""Chaos run: worker processes killed and restarted while they drain a queue, then every
token accounted for.

LocalStack serves SQS and SNS, moto server DynamoDB (LocalStack's fails offline), and
the ResolveCustomer emulator answers with faults, latency and a rate cap. N tokens of
every kind go on the queue (ordinary ones, some twice, ones that are throttled or fail a
few times first, slow ones, and poison: invalid, expired, disabled, malformed). K
`regworker run` processes consume them; every few seconds one is killed with SIGKILL
(sometimes SIGTERM, after which it must exit 0 within the grace period) and a new one
takes its place. Once the queue stays empty, the events on the tap queue (subscribed to
the SNS topic) and the DLQ are read and every token is checked:

- lost: a token that should have been published and was neither published nor
  dead-lettered, or a poison token not in the DLQ;
- wrong: a token dead-lettered with another reason than its own (or published when it
  is poison);
- duplicates: events beyond the first per event_id. Allowed without the idempotency
  table (subscribers deduplicate on event_id). With it, a duplicate can only come from
  a worker killed with SIGKILL between its publish and its COMPLETE write (the gap
  worker/core/idempotency.py documents): they are reported, and a run without SIGKILLs must
  show none.

It exits 1 if anything is lost or wrong, a SIGTERMed worker failed, or (with
--idempotency and no SIGKILL) an event was published twice. --seed fixes the token mix and the kill
schedule; timing (which message a kill hits) stays noisy.

    make localstack
    .venv/bin/python bench/chaos.py --tokens 3000 --workers 4 --json-out bench/results/chaos.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3

from worker.aws.sqs_wire import QueueDepth, batch_results, chunks, drain, queue_depth
from worker.core.errors import DeadLetterReason
from worker.core.events import token_ref, token_sha256
from worker.core.settings import Sink
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
    from mypy_boto3_sqs.type_defs import MessageTypeDef, SendMessageBatchRequestEntryTypeDef

REGION: Final = "us-east-1"
MAX_RECEIVES: Final = 5
SHUTDOWN_GRACE_SECONDS: Final = 5
# Python start-up and client teardown come on top of the grace period.
SIGTERM_EXIT_LIMIT: Final = SHUTDOWN_GRACE_SECONDS + 5.0
SIGTERM_SHARE: Final = 0.3
# A SIGTERM this soon after a worker was started may come before `regworker run` has
# its signal handlers (the imports take about half a second): the signal's default
# action ends it (exit -15), with nothing received yet and nothing in its log.
START_UP_SECONDS: Final = 3.0
DRAINED_CHECKS: Final = 3
TICK_SECONDS: Final = 1.0
PROGRESS_EVERY: Final = 5.0
NO_REASON: Final = "redrive (no reason)"
PUBLISHED: Final = "published"

WORKER_TIMINGS: Final = {
    "REGWORKER_WAIT_TIME_SECONDS": "2",
    # 20: the shortest lease the idempotency table allows (worker/core/settings.py).
    "REGWORKER_VISIBILITY_TIMEOUT_SECONDS": "20",
    "REGWORKER_REQUEUE_BASE_SECONDS": "1",
    "REGWORKER_REQUEUE_MAX_SECONDS": "5",
    "REGWORKER_MAX_RECEIVES": str(MAX_RECEIVES),
    "REGWORKER_RESOLVE_RATE_LIMIT": "100",
    "REGWORKER_SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE_SECONDS),
}

# Share of the tokens per kind; ordinary tokens fill the rest. "duplicate" tokens are
# ordinary ones enqueued twice.
MIX: Final = {
    "duplicate": 0.03,
    "throttle": 0.03,
    "error": 0.03,
    "slow": 0.02,
    "invalid": 0.03,
    "expired": 0.02,
    "disabled": 0.01,
    "malformed": 0.02,
}
EXPECTED_REASON: Final[dict[str, str]] = {
    "invalid": DeadLetterReason.INVALID_TOKEN.value,
    "expired": DeadLetterReason.EXPIRED_TOKEN.value,
    "disabled": DeadLetterReason.DISABLED_API.value,
    "malformed": DeadLetterReason.MALFORMED_MESSAGE.value,
}


# --- the tokens -----------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """One distinct message body and what must become of it."""

    kind: str
    body: str

    @property
    def expected_reason(self) -> str | None:
        """The DLQ reason it must get, or None when it must be published."""
        return EXPECTED_REASON.get(self.kind)

    @property
    def sha256(self) -> str:
        return token_sha256(self.body)


def _body(kind: str, run: str, number: int) -> str:
    name = f"{run}-{number:06d}"
    bodies = {
        "ordinary": f"chaos-{name}",
        "duplicate": f"chaos-dup-{name}",
        "throttle": f"throttle-2-{name}",
        "error": f"error-3-{name}",
        "slow": f"slow-200-{name}",
        "invalid": f"invalid-{name}",
        "expired": f"expired-{name}",
        "disabled": f"disabled-{name}",
    }
    if kind != "malformed":
        return bodies[kind]
    if number % 2:
        return f"not a token {name}"
    return json.dumps({"offer_type": "free-trial", "correlation_id": name})  # no token


def token_mix(count: int, rng: random.Random) -> tuple[list[Token], list[Token]]:
    """(distinct tokens, the bodies to send in order: duplicates twice, shuffled)."""
    run = f"{rng.randrange(16**6):06x}"
    kinds = {kind: max(1, round(count * share)) for kind, share in MIX.items()}
    kinds["ordinary"] = max(1, count - sum(kinds.values()))
    tokens: list[Token] = []
    for kind, how_many in kinds.items():
        tokens.extend(Token(kind, _body(kind, run, len(tokens) + n)) for n in range(how_many))
    sends = tokens + [token for token in tokens if token.kind == "duplicate"]
    rng.shuffle(sends)
    return tokens, sends


def enqueue(sqs: SQSClient, queue_url: str, sends: Sequence[Token]) -> None:
    """Send every token; entries that failed are sent again until none is left."""
    for chunk in chunks(sends):
        pending = list(chunk)
        while pending:
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(n), "MessageBody": token.body} for n, token in enumerate(pending)
            ]
            answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            results = batch_results(len(pending), answer)
            pending = [
                token for token, result in zip(pending, results, strict=True) if not result.ok
            ]


# --- the workers ----------------------------------------------------------------------


@dataclass
class WorkerProcess:
    number: int
    process: subprocess.Popen[bytes]
    log: Path
    started_at: float = field(default_factory=time.monotonic)
    terminated_at: float = 0.0  # when it got SIGTERM

    def stopped_in_start_up(self, code: int) -> bool:
        """Ended by the SIGTERM itself before it could handle one (see START_UP_SECONDS)."""
        early = self.terminated_at - self.started_at < START_UP_SECONDS
        return code == -signal.SIGTERM and early and not self.log.read_bytes().strip()


@dataclass
class PoolRecord:
    kills: int = 0
    sigterms: int = 0  # during the run; the final stop is not counted
    sigterm_exit_seconds: list[float] = field(default_factory=list)
    stopped_in_start_up: int = 0  # SIGTERMed before their handlers were in place
    failures: list[str] = field(default_factory=list)


class WorkerPool:
    """K `regworker run` processes; kills one now and then, and replaces it. A SIGTERMed
    worker must exit 0 within ``sigterm_exit_limit`` seconds."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        size: int,
        rng: random.Random,
        sigterm_exit_limit: float = SIGTERM_EXIT_LIMIT,
    ) -> None:
        self._env = env
        self._log_dir = log_dir
        self._size = size
        self._rng = rng
        self._sigterm_exit_limit = sigterm_exit_limit
        self._started = 0
        self.running: list[WorkerProcess] = []
        self.stopping: list[WorkerProcess] = []
        self.record = PoolRecord()

    def fill(self) -> None:
        while len(self.running) < self._size:
            self.running.append(self._start())

    def _start(self) -> WorkerProcess:
        self._started += 1
        log_path = self._log_dir / f"worker-{self._started:03d}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"],
                env=self._env,
                cwd=self._log_dir,  # no .env file from the repository
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return WorkerProcess(self._started, process, log_path)

    def strike(self) -> str:
        """Kill or terminate one running worker (the seed picks which and how)."""
        victim = self.running.pop(self._rng.randrange(len(self.running)))
        if self._rng.random() < SIGTERM_SHARE:
            self._terminate(victim)
            self.record.sigterms += 1
            action = "SIGTERM"
        else:
            victim.process.kill()
            victim.process.wait()
            self.record.kills += 1
            action = "SIGKILL"
        self.fill()
        return f"{action} worker {victim.number}"

    def _terminate(self, worker: WorkerProcess) -> None:
        worker.process.send_signal(signal.SIGTERM)
        worker.terminated_at = time.monotonic()
        self.stopping.append(worker)

    def reap(self) -> None:
        """Check SIGTERMed workers, and replace any that died on its own."""
        for worker in list(self.stopping):
            self._check_stopping(worker)
        for worker in list(self.running):
            code = worker.process.poll()
            if code is not None:
                self.running.remove(worker)
                self.record.failures.append(f"worker {worker.number} exited by itself: {code}")
        self.fill()

    def _check_stopping(self, worker: WorkerProcess) -> None:
        elapsed = time.monotonic() - worker.terminated_at
        code = worker.process.poll()
        if code is None and elapsed <= self._sigterm_exit_limit:
            return
        self.stopping.remove(worker)
        if code is None:
            worker.process.kill()
            worker.process.wait()
            self.record.failures.append(
                f"worker {worker.number}: still running"
                f" {self._sigterm_exit_limit:.0f}s after SIGTERM"
            )
            return
        self.record.sigterm_exit_seconds.append(round(elapsed, 2))
        if worker.stopped_in_start_up(code):
            self.record.stopped_in_start_up += 1
        elif code != 0:
            self.record.failures.append(f"worker {worker.number}: exit {code} after SIGTERM")

    def stop_all(self) -> None:
        for worker in self.running:
            self._terminate(worker)
        self.running.clear()
        self._size = 0
        while self.stopping:
            time.sleep(0.1)
            self.reap()

    def kill_all(self) -> None:
        """Last resort (an error or Ctrl-C): no process is left behind."""
        for worker in [*self.running, *self.stopping]:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()


# --- reading the queues ---------------------------------------------------------------


def dlq_reason(message: MessageTypeDef) -> str:
    attribute = message.get("MessageAttributes", {}).get("dlq_reason")
    reason = attribute.get("StringValue") if attribute is not None else None
    return reason or NO_REASON


# --- accounting -----------------------------------------------------------------------


@dataclass
class Accounting:
    sent_messages: int
    sent_distinct: int
    published_distinct: int = 0
    events: int = 0
    duplicates: int = 0
    dlq_by_reason: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)  # "kind token-ref"
    wrong: list[str] = field(default_factory=list)
    unknown: int = 0
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    duplicated: list[str] = field(default_factory=list)  # "kind token-ref xN"
    duplicates_enqueued_twice: int = 0  # events beyond the first of the "duplicate" kind


def account(
    tokens: Sequence[Token],
    sends: Sequence[Token],
    events: Sequence[dict[str, Any]],
    letters: Sequence[MessageTypeDef],
) -> Accounting:
    result = Accounting(sent_messages=len(sends), sent_distinct=len(tokens))
    by_hash = {token.sha256: token for token in tokens}
    by_body = {token.body: token for token in tokens}
    published = {event["token_sha256"] for event in events}
    result.events = len(events)
    result.duplicates = len(events) - len({event["event_id"] for event in events})
    copies = Counter(event["token_sha256"] for event in events)
    repeated = [(by_hash[sha], n) for sha, n in sorted(copies.items()) if n > 1 and sha in by_hash]
    result.duplicated = [f"{token.kind} {token_ref(token.body)} x{n}" for token, n in repeated]
    result.duplicates_enqueued_twice = sum(
        n - 1 for token, n in repeated if token.kind == "duplicate"
    )
    result.published_distinct = len(published & by_hash.keys())
    result.unknown = len(published - by_hash.keys())
    reasons: dict[str, set[str]] = {}
    for letter in letters:
        reason = dlq_reason(letter)
        result.dlq_by_reason[reason] += 1
        body = letter.get("Body", "")
        if body not in by_body:
            result.unknown += 1
        reasons.setdefault(body, set()).add(reason)
    for token in tokens:
        outcome = _judge(token, token.sha256 in published, reasons.get(token.body, set()))
        result.by_kind.setdefault(token.kind, Counter())[outcome] += 1
        described = f"{token.kind} {token_ref(token.body)}"
        if outcome == "lost":
            result.lost.append(described)
        elif outcome.startswith("wrong"):
            result.wrong.append(f"{described}: {outcome}")
    return result


def _judge(token: Token, published: bool, reasons: set[str]) -> str:
    expected = token.expected_reason
    if expected is None:
        wrong = reasons - {NO_REASON}
        if wrong:
            return f"wrong: dead-lettered as {','.join(sorted(wrong))}"
        if published:
            return PUBLISHED
        return NO_REASON if reasons else "lost"
    if published:
        return "wrong: published"
    if reasons - {expected, NO_REASON}:
        return f"wrong: dead-lettered as {','.join(sorted(reasons))}"
    if expected in reasons:
        return expected
    return NO_REASON if reasons else "lost"


# --- the run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    localstack: LocalService
    emulator: LocalService
    dynamodb: LocalService | None


def emulator_faults(fault_rate: float, seed: int) -> list[str]:
    """The emulator's options: ``fault_rate`` of the calls fail with a 5xx, 20 ms added
    to each, 200 calls/s at most."""
    return [
        *("--fault-rate", str(fault_rate), "--latency-ms", "20", "--tps", "200"),
        *("--seed", str(seed)),
    ]


@contextlib.contextmanager
def local_services(args: argparse.Namespace) -> Iterator[Endpoints]:
    with contextlib.ExitStack() as stack:
        localstack = stack.enter_context(localstack_server())
        emulator = stack.enter_context(emulator_server(emulator_faults(args.fault_rate, args.seed)))
        dynamodb = stack.enter_context(moto_server()) if args.idempotency else None
        yield Endpoints(localstack, emulator, dynamodb)


def aws_env(endpoints: Endpoints) -> dict[str, str]:
    env = local_env(endpoints.localstack.url, endpoints.emulator.url, REGION)
    if endpoints.dynamodb is not None:
        env["AWS_ENDPOINT_URL_DYNAMODB"] = endpoints.dynamodb.url
    return env


def create_table(session: boto3.Session, name: str) -> None:
    session.client("dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "event_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "event_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


def worker_env(
    aws: dict[str, str],
    resources: Resources,
    table: str,
    log_level: str,
    timings: Mapping[str, str] = WORKER_TIMINGS,
) -> dict[str, str]:
    """The environment of a worker process: no AWS_* or REGWORKER_* variable of this
    process, the local endpoints, the resources and ``timings`` (chaos's short ones by
    default; the outage run passes none, so the worker's defaults hold)."""
    env = {**clean_environ(), **aws, **resources.settings_env(), **timings}
    env["REGWORKER_LOG_LEVEL"] = log_level
    env["REGWORKER_HTTP_PORT"] = "0"  # several workers on one host: no port to fight over
    if table:
        env["REGWORKER_IDEMPOTENCY_TABLE"] = table
    return env


@dataclass
class RunState:
    started: float = field(default_factory=time.monotonic)
    drained: bool = False
    seconds: float = 0.0  # until drained or the time limit

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def drive(
    pool: WorkerPool, sqs: SQSClient, resources: Resources, args: argparse.Namespace
) -> RunState:
    """Kill workers on schedule until the queue stays empty or time runs out."""
    state = RunState()
    next_strike = args.kill_every
    next_progress = 0.0
    zero_checks = 0
    pool.fill()
    while state.elapsed < args.duration_limit:
        time.sleep(TICK_SECONDS)
        pool.reap()
        depth = queue_depth(sqs, resources.queue_url)
        zero_checks = zero_checks + 1 if sum(depth) == 0 else 0
        if zero_checks >= DRAINED_CHECKS:
            state.drained = True
            break
        if state.elapsed >= next_strike:
            print(f"[{state.elapsed:5.0f}s] {pool.strike()}", flush=True)
            next_strike += args.kill_every
        if state.elapsed >= next_progress:
            _progress(state, depth, pool)
            next_progress += PROGRESS_EVERY
    state.seconds = state.elapsed
    return state


def _progress(state: RunState, depth: QueueDepth, pool: WorkerPool) -> None:
    visible, in_flight, delayed = depth
    record = pool.record
    print(
        f"[{state.elapsed:5.0f}s] queue {sum(depth)} (visible {visible}, in flight {in_flight},"
        f" delayed {delayed}) | workers {len(pool.running)} | kills {record.kills},"
        f" sigterms {record.sigterms}",
        flush=True,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    tokens, sends = token_mix(args.tokens, random.Random(f"{args.seed}-tokens"))
    log_dir = Path(args.log_dir).resolve()
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    use_clean_environ()
    with local_services(args) as endpoints:
        aws = aws_env(endpoints)
        os.environ.update(aws)
        session = boto3.Session(region_name=REGION)
        name = f"chaos-{args.seed}-{os.getpid()}"
        resources = provision(session, name, Sink.SNS, max_receives=MAX_RECEIVES, tap=True)
        table = f"{name}-idempotency" if args.idempotency else ""
        if table:
            create_table(session, table)
        sqs = session.client("sqs")
        enqueue(sqs, resources.queue_url, sends)
        print(f"enqueued {len(sends)} messages ({len(tokens)} distinct); logs in {log_dir}")
        pool = WorkerPool(
            worker_env(aws, resources, table, args.worker_log_level),
            log_dir,
            args.workers,
            random.Random(f"{args.seed}-kills"),
        )
        try:
            state = drive(pool, sqs, resources, args)
            pool.stop_all()
        finally:
            pool.kill_all()
        events = [
            json.loads(m.get("Body", "{}"))
            for m in drain(sqs, resources.tap_queue_url, empty_polls=3)
        ]
        letters = drain(sqs, resources.dlq_url, empty_polls=3)
        left = sum(queue_depth(sqs, resources.queue_url))
        calls = emulator_calls(endpoints.emulator)
    result = report(args, account(tokens, sends, events, letters), pool.record, state, left)
    return {**result, "resolve_customer_calls": calls}


def emulator_calls(emulator: LocalService) -> dict[str, int]:
    """ResolveCustomer calls by outcome, as the emulator counted them (faults included)."""
    with urllib.request.urlopen(f"{emulator.url}/_emulator/stats", timeout=5) as answer:
        stats = json.load(answer)
    by_outcome: dict[str, int] = stats["by_outcome"]
    return {"total": stats["calls"], **dict(sorted(by_outcome.items()))}


def report(
    args: argparse.Namespace,
    accounting: Accounting,
    record: PoolRecord,
    state: RunState,
    left_in_queue: int,
) -> dict[str, Any]:
    failures = [
        *(f"lost: {item}" for item in accounting.lost),
        *(f"wrong: {item}" for item in accounting.wrong),
        *record.failures,
    ]
    if left_in_queue:
        failures.append(f"{left_in_queue} messages left in the source queue")
    if not state.drained:
        failures.append(f"queue not drained within {args.duration_limit:.0f}s")
    if args.idempotency and accounting.duplicates and not record.kills:
        failures.append(f"{accounting.duplicates} duplicate events despite the idempotency table")
    return {
        "options": {
            "tokens": args.tokens,
            "workers": args.workers,
            "kill_every_seconds": args.kill_every,
            "duration_limit_seconds": args.duration_limit,
            "seed": args.seed,
            "idempotency": args.idempotency,
            "fault_rate": args.fault_rate,
        },
        "messages_sent": accounting.sent_messages,
        "tokens_sent_distinct": accounting.sent_distinct,
        "published_distinct": accounting.published_distinct,
        "events": accounting.events,
        "duplicates": accounting.duplicates,
        "duplicates_of_tokens_enqueued_twice": accounting.duplicates_enqueued_twice,
        "duplicated_tokens": accounting.duplicated,
        "dlq_by_reason": dict(sorted(accounting.dlq_by_reason.items())),
        "lost": len(accounting.lost),
        "wrong": len(accounting.wrong),
        "unknown_messages": accounting.unknown,
        "left_in_source_queue": left_in_queue,
        "by_kind": {kind: dict(counts) for kind, counts in sorted(accounting.by_kind.items())},
        "kills": record.kills,
        "sigterms": record.sigterms,
        "sigterm_exit_seconds_max": max(record.sigterm_exit_seconds, default=None),
        "stopped_in_start_up": record.stopped_in_start_up,
        "drained": state.drained,
        "seconds_to_drain": round(state.seconds, 1),
        "seconds_total": round(state.elapsed, 1),
        "failures": failures,
        "ok": not failures,
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        ("messages sent (duplicates included)", result["messages_sent"]),
        ("tokens sent (distinct)", result["tokens_sent_distinct"]),
        ("published (distinct tokens)", result["published_distinct"]),
        ("events read from the tap queue", result["events"]),
        ("duplicate events (same event_id)", result["duplicates"]),
        ("  of tokens enqueued twice", result["duplicates_of_tokens_enqueued_twice"]),
        (
            "  of tokens enqueued once (redelivered)",
            result["duplicates"] - result["duplicates_of_tokens_enqueued_twice"],
        ),
        *((f"in DLQ: {reason}", n) for reason, n in result["dlq_by_reason"].items()),
        ("lost", result["lost"]),
        ("wrong", result["wrong"]),
        ("left in the source queue", result["left_in_source_queue"]),
        ("workers killed (SIGKILL)", result["kills"]),
        ("workers stopped (SIGTERM)", result["sigterms"]),
        ("slowest exit after SIGTERM (s)", result["sigterm_exit_seconds_max"]),
        ("SIGTERMed in start-up (exit -15, nothing taken)", result["stopped_in_start_up"]),
        ("seconds until drained (or the limit)", result["seconds_to_drain"]),
        ("seconds in all (with the final stop)", result["seconds_total"]),
    ]
    calls = result.get("resolve_customer_calls", {})
    rows.extend((f"ResolveCustomer calls: {outcome}", n) for outcome, n in calls.items())
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    lines.append("by kind: " + "; ".join(f"{k} {v}" for k, v in result["by_kind"].items()))
    if result["dlq_by_reason"].get(NO_REASON):
        lines.append(
            f"'{NO_REASON}': moved by the queue's redrive policy after repeated crashes;"
            " a replay (regworker dlq replay) resolves them."
        )
    lines.append(
        "The seed fixes the token mix and the kill schedule; which messages a kill hits"
        " depends on timing, so counts vary between runs."
    )
    lines.extend(f"FAILURE: {failure}" for failure in result["failures"][:20])
    lines.append("RESULT: " + ("ok" if result["ok"] else "FAILED"))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--tokens", type=int, default=3000, help="distinct tokens (%(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (%(default)s)")
    parser.add_argument(
        "--duration-limit", type=float, default=600, help="seconds before giving up (%(default)s)"
    )
    parser.add_argument(
        "--kill-every", type=float, default=5, help="seconds between kills (%(default)s)"
    )
    parser.add_argument("--seed", type=int, default=1, help="token mix and kill schedule")
    parser.add_argument(
        "--idempotency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="workers use a DynamoDB idempotency table; then no duplicate is allowed",
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.2, help="share of ResolveCustomer calls failing"
    )
    parser.add_argument("--json-out", type=Path, metavar="FILE", help="write the result as JSON")
    parser.add_argument(
        "--log-dir", default="bench/results/chaos-logs", help="worker logs (%(default)s)"
    )
    parser.add_argument(
        "--worker-log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="REGWORKER_LOG_LEVEL of the workers (%(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(render(result))
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

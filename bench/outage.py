"""Outage run: a dependency breaks while workers drain a queue at their default settings,
then every token is accounted for, as in the chaos run.

Each scenario gets fresh resources (queue, DLQ with the redrive policy `regworker
provision` sets: max receives + 3, SNS topic with a tap queue), a fresh ResolveCustomer
emulator answering 10% of calls with a 5xx and adding 20 ms throughout, and K `regworker
run` processes at the worker's default settings (visibility 60 s, 20 s long polls, max
receives 5, ResolveCustomer ceiling 20/s); nothing is tuned but the resources. Chaos's
token mix (bench/chaos.py: ordinary, enqueued twice, throttled, failing first, slow,
invalid, expired, disabled, malformed; 600 tokens by default) goes on the queue in two
waves:

1. the first wave, before the workers start;
2. once a share of the first wave is gone (``--start-at``, 20%), the outage begins:
   - credentials: ResolveCustomer answers ``UnrecognizedClientException`` to every call
     (the emulator's fault switch) for ``--credentials-fault-seconds`` (600);
   - sqs / sns / dynamodb: the workers reach that service through a TCP proxy
     (``worker.local.sandbox.threaded_proxy``), which is cut for ``--cut-seconds`` (60): open
     connections dropped, new ones closed at once. The sqs cut takes the source queue
     and the DLQ; dynamodb runs with the idempotency table (``REGWORKER_IDEMPOTENCY_TABLE``);
   - baseline (not in the default set): nothing breaks, as a reference;
3. the second wave is enqueued halfway through the outage, so messages also arrive
   while it lasts;
4. the outage ends (recovery), the run waits until the queue stays empty, the workers get
   SIGTERM (each must exit 0), and the tap queue and the DLQ are read.

Per scenario it reports lost, wrong, left and duplicates as chaos does, plus: good tokens
in the DLQ (must be 0), DLQ messages without a reason (receive counts spent by the
redrive policy: must be 0), seconds from recovery to the first and to the last good
token published (the last within ``--recovery-target``, 60 s; publish times are the tap
queue's SentTimestamp), and from the workers' JSON logs the hold events
(``configuration_fault``, ``outage``, ``fault_cleared`` with ``after_seconds``) and the
longest hold. A scenario whose outage left no trace in the logs fails: it showed
nothing. Exit 1 with ``RESULT: FAILED`` and the reasons if any target is missed.

Why 600 tokens and two waves: the outage must begin with messages in hand and on the
queue (it waits for ``--start-at``, so the queue is never drained first, whatever the
count) and messages must arrive while it lasts (the second wave). The count only sets
the backlog left at recovery, about 500 messages here; three workers at the defaults
drain it in 15-25 s on a 2-core machine (the throttled tokens of the mix slow the flow
controller), which leaves most of the 60 s target to the workers noticing the recovery,
which is what it is meant to measure. A backlog of 2000 would take longer than 60 s on
its own, outage or not.

LocalStack (SQS, SNS) and moto server (DynamoDB) are started once for the run; the
scenarios run one after another.

    make localstack
    .venv/bin/python bench/outage.py --json-out bench/results/outage.json
    .venv/bin/python bench/outage.py --quick --scenarios credentials,sns
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import boto3
from chaos import (
    EXPECTED_REASON,
    NO_REASON,
    REGION,
    Endpoints,
    Token,
    WorkerPool,
    account,
    aws_env,
    emulator_calls,
    emulator_faults,
    enqueue,
    token_mix,
    worker_env,
)

from worker.aws.sqs_wire import drain, queue_depth
from worker.core.events import token_ref
from worker.core.settings import Settings, Sink
from worker.local.sandbox import (
    LocalService,
    clear_emulator_fault,
    emulator_server,
    localstack_server,
    moto_server,
    set_emulator_fault,
    threaded_proxy,
    use_clean_environ,
)
from worker.ops.provision import Resources, provision

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

CREDENTIALS_FAULT: Final = "UnrecognizedClientException"
TICK_SECONDS: Final = 1.0
PROGRESS_EVERY: Final = 15.0
DRAINED_CHECKS: Final = 3
START_LIMIT_SECONDS: Final = 300.0  # the outage begins then even if --start-at is not reached
_DEFAULTS: Final = Settings.model_fields
# A SIGTERMed worker at the defaults: its long poll ends (wait time), started messages
# finish (grace), plus start-up and teardown: what docker-compose's stop_grace_period is.
SIGTERM_EXIT_LIMIT: Final = (
    float(_DEFAULTS["wait_time_seconds"].default)
    + float(_DEFAULTS["shutdown_grace_seconds"].default)
    + 5.0
)
HOLD_EVENTS: Final = ("configuration_fault", "outage")
LAST_TOKENS_SHOWN: Final = 3
SHOWN_EVENTS: Final = (
    "configuration_fault",
    "outage",
    "fault_cleared",
    "receive_failed",
    "publish_failed",
    "dead_letter_failed",
    "delete_failed",
    "visibility_extend_failed",
    "requeued",
)


# --- the scenarios --------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    service: str = ""  # the endpoint cut ("sqs", "sns", "dynamodb"); "" for none
    fault: str = ""  # the emulator's fault code, if any
    idempotency: bool = False
    # The worker's components (worker.core.probes.Component) the outage breaks: their holds
    # are the outage's; a hold of any of them, or one of ``evidence`` in the logs, shows
    # that the outage reached the workers.
    components: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()


SCENARIOS: Final = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "credentials",
            f"ResolveCustomer answers {CREDENTIALS_FAULT}",
            fault=CREDENTIALS_FAULT,
            components=("resolve_customer",),
        ),
        Scenario(
            "sqs",
            "SQS endpoint cut (source queue and DLQ)",
            service="sqs",
            components=("source_queue", "dead_letter_queue"),
            evidence=("receive_failed",),
        ),
        Scenario("sns", "SNS endpoint cut (the sink)", service="sns", components=("sink",)),
        Scenario(
            "dynamodb",
            "DynamoDB endpoint cut (idempotency table on)",
            service="dynamodb",
            idempotency=True,
            components=("idempotency_table",),
        ),
        Scenario("baseline", "no outage (reference)"),
    )
}
DEFAULT_SCENARIOS: Final = ("credentials", "sqs", "sns", "dynamodb")


class Injection(Protocol):
    def begin(self) -> None: ...
    def end(self) -> None: ...


class Nothing:
    def begin(self) -> None:
        pass

    def end(self) -> None:
        pass


@dataclass
class EmulatorFault:
    """Every ResolveCustomer call answers ``code`` from begin() to end(). The emulator is
    asked for a little more than planned, so a crashed run does not leave it broken."""

    url: str
    code: str
    seconds: float

    def begin(self) -> None:
        set_emulator_fault(self.url, self.code, self.seconds + 60)

    def end(self) -> None:
        clear_emulator_fault(self.url)


class Cut(Protocol):
    def cut(self) -> None: ...
    def restore(self) -> None: ...


@dataclass
class EndpointCut:
    proxy: Cut

    def begin(self) -> None:
        self.proxy.cut()

    def end(self) -> None:
        self.proxy.restore()


# --- what the logs and the tap queue say ----------------------------------------------


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def parse_time(stamp: str) -> float:
    """A structlog ISO timestamp (UTC, "Z") as epoch seconds."""
    return datetime.fromisoformat(stamp).timestamp()


@dataclass(frozen=True)
class Hold:
    """One hold of one worker, from its first ``configuration_fault``/``outage`` line
    to its ``fault_cleared``."""

    worker: str
    component: str
    kind: str  # configuration_fault or outage
    error: str  # as first reported
    began: float  # epoch seconds
    cleared: float | None  # epoch seconds; None if still held at the end
    seconds: float  # after_seconds, or until the end when not cleared

    def overlaps(self, start: float, end: float) -> bool:
        return self.began <= end and (self.cleared is None or self.cleared >= start)


@dataclass
class LogSummary:
    """What the workers' JSON log lines say: every event counted (also as
    "event:component"), every hold, and the first line of each event worth showing."""

    events: Counter[str] = field(default_factory=Counter)
    holds: list[Hold] = field(default_factory=list)
    samples: dict[str, str] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)  # the workers' own tallies

    def seen(self, key: str) -> bool:
        return self.events[key] > 0


def summarize_logs(logs: Mapping[str, Iterable[str]], now: float) -> LogSummary:
    """``logs``: each worker's name and its log lines. A hold still open at the end
    counts until ``now`` (epoch seconds)."""
    summary = LogSummary()
    for worker, lines in logs.items():
        open_holds: dict[str, tuple[str, str, float]] = {}  # component: kind, error, began
        for line in lines:
            entry = _json_line(line)
            if entry is None:
                continue
            event = str(entry["event"])
            component = str(entry.get("component", ""))
            summary.events[event] += 1
            if component:
                summary.events[f"{event}:{component}"] += 1
            if event == "worker_stopped":
                summary.outcomes.update(entry.get("outcomes", {}))
            if event in SHOWN_EVENTS and event not in summary.samples:
                summary.samples[event] = line.strip()[:600]
            stamp = parse_time(str(entry.get("timestamp", ""))) if "timestamp" in entry else now
            if event in HOLD_EVENTS and component not in open_holds:
                open_holds[component] = (event, str(entry.get("error", "")), stamp)
            elif event == "fault_cleared" and component in open_holds:
                kind, error, began = open_holds.pop(component)
                seconds = float(entry.get("after_seconds", stamp - began))
                summary.holds.append(Hold(worker, component, kind, error, began, stamp, seconds))
        for component, (kind, error, began) in open_holds.items():
            summary.holds.append(Hold(worker, component, kind, error, began, None, now - began))
    return summary


@dataclass(frozen=True)
class HoldReport:
    """The holds of the outage (its components, overlapping it) and the others."""

    count: int
    longest: float | None
    longest_by_component: dict[str, float]
    last_cleared_after_recovery: float | None  # seconds, of the outage's holds
    not_cleared: list[str]
    others: dict[str, int]  # "component: error" of holds that are not the outage's

    @classmethod
    def of(
        cls, holds: Sequence[Hold], components: Sequence[str], began: float, ended: float
    ) -> HoldReport:
        mine = [h for h in holds if h.component in components and h.overlaps(began, ended)]
        longest: dict[str, float] = {}
        for hold in mine:
            longest[hold.component] = round(max(longest.get(hold.component, 0.0), hold.seconds), 1)
        cleared = [h.cleared for h in mine if h.cleared is not None]
        others = Counter(f"{h.component}: {h.error.split(':')[0]}" for h in holds if h not in mine)
        return cls(
            count=len(mine),
            longest=max(longest.values(), default=None),
            longest_by_component=longest,
            last_cleared_after_recovery=round(max(cleared) - ended, 1) if cleared else None,
            not_cleared=[
                f"{h.worker} {h.component} held {h.seconds:.0f}s"
                for h in holds
                if h.cleared is None
            ],
            others=dict(sorted(others.items())),
        )


def _json_line(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and "event" in entry else None


@dataclass(frozen=True)
class PublishTiming:
    """When the good tokens were first published, against the moment of recovery."""

    good_tokens: int
    published: int
    published_during: int  # first published between the outage's start and recovery
    published_after: int  # first published after recovery
    first_after_seconds: float | None  # recovery to the first token published after it
    last_after_seconds: float | None  # recovery to the last good token's first publish
    last_tokens: list[str]  # the last few good tokens published: "ref +seconds", as logged


def publish_timing(
    tokens: Sequence[Token],
    tap: Sequence[tuple[str, float]],
    began_at: float,
    recovered_at: float,
) -> PublishTiming:
    """``tap``: (token_sha256, epoch seconds) of every event read; times in epoch seconds."""
    good = {token.sha256: token for token in tokens if token.expected_reason is None}
    first: dict[str, float] = {}
    for sha, at in tap:
        if sha in good:
            first[sha] = min(first.get(sha, at), at)
    after = sorted(at - recovered_at for at in first.values() if at >= recovered_at)
    last = max(first.values(), default=None)
    latest = sorted(first.items(), key=lambda item: item[1])[-LAST_TOKENS_SHOWN:]
    return PublishTiming(
        good_tokens=len(good),
        published=len(first),
        published_during=sum(began_at <= at < recovered_at for at in first.values()),
        published_after=len(after),
        first_after_seconds=round(after[0], 1) if after else None,
        last_after_seconds=round(last - recovered_at, 1) if last is not None else None,
        last_tokens=[
            f"{token_ref(good[sha].body)} {at - recovered_at:+.1f}s" for sha, at in latest[::-1]
        ],
    )


def tap_times(messages: Sequence[MessageTypeDef]) -> list[tuple[str, float]]:
    """(token_sha256, SentTimestamp in epoch seconds) of each event on the tap queue."""
    times = []
    for message in messages:
        event = json.loads(message.get("Body", "{}"))
        sent = int(message.get("Attributes", {}).get("SentTimestamp", "0")) / 1000
        times.append((str(event["token_sha256"]), sent))
    return times


def good_in_dlq(tokens: Sequence[Token], letters: Sequence[MessageTypeDef]) -> list[str]:
    """Kinds and refs of tokens that must be published but reached the DLQ."""
    good = {token.body: token for token in tokens if token.expected_reason is None}
    found = {good[body] for letter in letters if (body := letter.get("Body", "")) in good}
    return sorted(f"{token.kind} {token_ref(token.body)}" for token in found)


def split_waves(sends: Sequence[Token], second_share: float) -> tuple[list[Token], list[Token]]:
    """The messages before the outage and the ones enqueued while it lasts."""
    second = round(len(sends) * second_share)
    cut = len(sends) - second
    return list(sends[:cut]), list(sends[cut:])


# --- one scenario ---------------------------------------------------------------------


@dataclass(frozen=True)
class Shared:
    localstack: LocalService
    dynamodb: LocalService | None


@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    began_at: float = 0.0  # epoch seconds
    recovered_at: float = 0.0
    depth_at_begin: int = 0
    visible_at_begin: int = 0
    depth_at_recovery: int = 0
    dlq_at_begin: int = 0
    dlq_at_recovery: int = 0
    drained: bool = False
    drain_seconds: float = 0.0  # recovery to the queue found empty
    start_reached: bool = True

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Driver:
    """Runs one scenario's timeline: first wave, outage, second wave, recovery, drain."""

    def __init__(
        self,
        scenario: Scenario,
        args: argparse.Namespace,
        sqs: SQSClient,
        resources: Resources,
        pool: WorkerPool,
    ) -> None:
        self.scenario = scenario
        self.args = args
        self.sqs = sqs
        self.resources = resources
        self.pool = pool
        self.timeline = Timeline()
        self._next_progress = 0.0

    def run(self, injection: Injection, waves: tuple[list[Token], list[Token]]) -> Timeline:
        first, second = waves
        line = self.timeline
        enqueue(self.sqs, self.resources.queue_url, first)
        self.pool.fill()
        threshold = (1 - self.args.start_at) * len(first)
        while sum(depth := self._tick("before")) > threshold:
            if line.elapsed > START_LIMIT_SECONDS:
                line.start_reached = False
                break
        line.depth_at_begin, line.visible_at_begin = sum(depth), depth[0]
        line.dlq_at_begin = self._dlq_depth()
        duration = outage_seconds(self.scenario, self.args)
        self._say(f"outage begins: {self.scenario.title} for {duration:.0f}s")
        begun = time.monotonic()
        line.began_at = time.time()
        try:
            injection.begin()
            waved = False
            while (held := time.monotonic() - begun) < duration:
                if not waved and held >= duration / 2:
                    enqueue(self.sqs, self.resources.queue_url, second)
                    self._say(f"second wave: {len(second)} messages enqueued")
                    waved = True
                self._tick("outage")
            if not waved:
                enqueue(self.sqs, self.resources.queue_url, second)
        finally:
            injection.end()
        line.recovered_at = time.time()
        recovered = time.monotonic()
        line.depth_at_recovery = sum(queue_depth(self.sqs, self.resources.queue_url))
        line.dlq_at_recovery = self._dlq_depth()
        self._say(f"recovered; {line.depth_at_recovery} messages on the queue")
        empty = 0
        while time.monotonic() - recovered < self.args.drain_limit:
            empty = empty + 1 if sum(self._tick("after")) == 0 else 0
            if empty >= DRAINED_CHECKS:
                line.drained = True
                break
        line.drain_seconds = round(time.monotonic() - recovered, 1)
        self._say(
            "queue drained" if line.drained else f"not drained {self.args.drain_limit:.0f}s after"
        )
        return line

    def _tick(self, phase: str) -> tuple[int, int, int]:
        time.sleep(TICK_SECONDS)
        self.pool.reap()
        depth = queue_depth(self.sqs, self.resources.queue_url)
        if self.timeline.elapsed >= self._next_progress:
            visible, in_flight, delayed = depth
            self._say(
                f"{phase}: queue {sum(depth)} (visible {visible}, in flight {in_flight},"
                f" delayed {delayed}) | DLQ {self._dlq_depth()} | published ~{self._tapped()}"
                f" | workers {len(self.pool.running)}"
            )
            self._next_progress += PROGRESS_EVERY
        return depth

    def _dlq_depth(self) -> int:
        return sum(queue_depth(self.sqs, self.resources.dlq_url))

    def _tapped(self) -> int:
        return sum(queue_depth(self.sqs, self.resources.tap_queue_url))

    def _say(self, text: str) -> None:
        print(f"[{self.scenario.name} {self.timeline.elapsed:5.0f}s] {text}", flush=True)


def outage_seconds(scenario: Scenario, args: argparse.Namespace) -> float:
    seconds: float = args.credentials_fault_seconds if scenario.fault else args.cut_seconds
    return seconds


def run_scenario(scenario: Scenario, args: argparse.Namespace, shared: Shared) -> dict[str, Any]:
    rng = random.Random(f"{args.seed}-{scenario.name}-tokens")
    tokens, sends = token_mix(args.tokens, rng)
    waves = split_waves(sends, args.second_wave)
    log_dir = Path(args.log_dir).resolve() / scenario.name
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    idempotency = scenario.idempotency or args.idempotency
    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(emulator_server(emulator_faults(args.fault_rate, args.seed)))
        aws = aws_env(Endpoints(shared.localstack, emulator, shared.dynamodb))
        use_clean_environ(**aws)  # the run's own clients: never cut
        session = boto3.Session(region_name=REGION)
        name = f"outage-{scenario.name}-{args.seed}-{os.getpid()}"
        resources = provision(session, name, Sink.SNS, tap=True, idempotency_table=idempotency)
        sqs = session.client("sqs")
        workers_aws = {k: v for k, v in aws.items() if k != "AWS_ENDPOINT_URL_DYNAMODB"}
        if idempotency:
            workers_aws["AWS_ENDPOINT_URL_DYNAMODB"] = aws["AWS_ENDPOINT_URL_DYNAMODB"]
        injection: Injection = Nothing()
        if scenario.fault:
            injection = EmulatorFault(emulator.url, scenario.fault, outage_seconds(scenario, args))
        elif scenario.service:
            variable = f"AWS_ENDPOINT_URL_{scenario.service.upper()}"
            proxy = stack.enter_context(threaded_proxy(aws.get(variable, aws["AWS_ENDPOINT_URL"])))
            workers_aws[variable] = proxy.url
            injection = EndpointCut(proxy)
        env = worker_env(workers_aws, resources, "", "INFO", timings={})
        pool = WorkerPool(
            env, log_dir, args.workers, random.Random(0), sigterm_exit_limit=SIGTERM_EXIT_LIMIT
        )
        print(
            f"[{scenario.name}] {len(sends)} messages ({len(tokens)} distinct tokens),"
            f" {len(waves[1])} of them during the outage; {args.workers} workers; logs in"
            f" {log_dir}",
            flush=True,
        )
        driver = Driver(scenario, args, sqs, resources, pool)
        try:
            timeline = driver.run(injection, waves)
            pool.stop_all()
        finally:
            pool.kill_all()
        tap = drain(
            sqs, resources.tap_queue_url, empty_polls=3, system_attributes=["SentTimestamp"]
        )
        letters = drain(sqs, resources.dlq_url, empty_polls=3)
        left = sum(queue_depth(sqs, resources.queue_url))
        calls = emulator_calls(emulator)
    logs = {path.stem: path.read_text().splitlines() for path in sorted(log_dir.glob("*.log"))}
    return judge(
        Outcome(
            scenario=scenario,
            duration=outage_seconds(scenario, args),
            idempotency=idempotency,
            tokens=tokens,
            sends=sends,
            second_wave=len(waves[1]),
            tap=tap,
            letters=letters,
            left=left,
            calls=calls,
            timeline=timeline,
            logs=summarize_logs(logs, time.time()),
            pool_failures=list(pool.record.failures),
            sigterm_exit_seconds=list(pool.record.sigterm_exit_seconds),
        ),
        recovery_target=args.recovery_target,
    )


# --- judging ------------------------------------------------------------------------


@dataclass
class Outcome:
    scenario: Scenario
    duration: float
    idempotency: bool
    tokens: list[Token]
    sends: list[Token]
    second_wave: int
    tap: list[MessageTypeDef]
    letters: list[MessageTypeDef]
    left: int
    calls: dict[str, int]
    timeline: Timeline
    logs: LogSummary
    pool_failures: list[str]
    sigterm_exit_seconds: list[float]


def judge(outcome: Outcome, recovery_target: float) -> dict[str, Any]:
    scenario, line, logs = outcome.scenario, outcome.timeline, outcome.logs
    holds = HoldReport.of(logs.holds, scenario.components, line.began_at, line.recovered_at)
    broken = bool(scenario.components)
    events = [json.loads(m.get("Body", "{}")) for m in outcome.tap]
    accounting = account(outcome.tokens, outcome.sends, events, outcome.letters)
    timing = publish_timing(
        outcome.tokens, tap_times(outcome.tap), line.began_at, line.recovered_at
    )
    good_letters = good_in_dlq(outcome.tokens, outcome.letters)
    no_reason = accounting.dlq_by_reason.get(NO_REASON, 0)
    failures = [
        *(f"lost: {item}" for item in accounting.lost[:20]),
        *(f"wrong: {item}" for item in accounting.wrong[:20]),
        *outcome.pool_failures,
    ]
    if good_letters:
        failures.append(
            f"{len(good_letters)} good tokens in the DLQ: {', '.join(good_letters[:10])}"
        )
    if no_reason:
        failures.append(f"{no_reason} DLQ messages without a reason (moved by the redrive policy)")
    if outcome.left:
        failures.append(f"{outcome.left} messages left in the source queue")
    if not line.drained:
        failures.append("the queue did not drain after recovery")
    if not line.start_reached:
        failures.append(f"the outage began before {START_LIMIT_SECONDS:.0f}s had drained enough")
    if broken and line.visible_at_begin == 0:
        failures.append("the queue was empty when the outage began: it shows nothing")
    last = timing.last_after_seconds
    if broken and (last is None or last >= recovery_target):
        failures.append(
            f"last good token published {last}s after recovery (target < {recovery_target:.0f}s)"
        )
    if broken and not holds.count and not any(logs.seen(key) for key in scenario.evidence):
        expected = [f"a hold of {c}" for c in scenario.components] + list(scenario.evidence)
        failures.append(
            f"no trace of the outage in the worker logs (expected {' or '.join(expected)})"
        )
    if holds.not_cleared:
        failures.append(f"holds not cleared at the end: {'; '.join(holds.not_cleared[:5])}")
    if outcome.idempotency and accounting.duplicates:
        failures.append(f"{accounting.duplicates} duplicate events despite the idempotency table")
    return {
        "scenario": scenario.name,
        "outage": scenario.title,
        "outage_seconds": outcome.duration,
        "idempotency": outcome.idempotency,
        "began_at": _utc(line.began_at),  # to match the workers' log timestamps
        "recovered_at": _utc(line.recovered_at),
        "messages_sent": accounting.sent_messages,
        "messages_during_outage": outcome.second_wave,
        "tokens_sent_distinct": accounting.sent_distinct,
        "good_tokens": timing.good_tokens,
        "on_queue_at_begin": line.depth_at_begin,
        "visible_at_begin": line.visible_at_begin,
        "on_queue_at_recovery": line.depth_at_recovery,
        "dlq_during_outage": line.dlq_at_recovery - line.dlq_at_begin,
        "published_distinct": accounting.published_distinct,
        "published_during_outage": timing.published_during,
        "published_after_recovery": timing.published_after,
        "recovery_to_first_publish_seconds": timing.first_after_seconds,
        "recovery_to_last_good_publish_seconds": timing.last_after_seconds,
        "recovery_to_last_fault_cleared_seconds": holds.last_cleared_after_recovery,
        "recovery_to_drained_seconds": line.drain_seconds,
        "last_good_tokens_published": timing.last_tokens,
        "events": accounting.events,
        "duplicates": accounting.duplicates,
        "duplicates_of_tokens_enqueued_twice": accounting.duplicates_enqueued_twice,
        "dlq_by_reason": dict(sorted(accounting.dlq_by_reason.items())),
        "poison_tokens": len(outcome.tokens) - timing.good_tokens,
        "poison_in_dlq_with_reason": sum(
            counts.get(EXPECTED_REASON[kind], 0)
            for kind, counts in accounting.by_kind.items()
            if kind in EXPECTED_REASON
        ),
        "good_tokens_in_dlq": len(good_letters),
        "dlq_without_reason": no_reason,
        "lost": len(accounting.lost),
        "wrong": len(accounting.wrong),
        "unknown_messages": accounting.unknown,
        "left_in_source_queue": outcome.left,
        "by_kind": {kind: dict(counts) for kind, counts in sorted(accounting.by_kind.items())},
        "outage_holds": holds.count,
        "longest_hold_seconds": holds.longest,
        "longest_hold_by_component": holds.longest_by_component,
        "other_holds": holds.others,
        "worker_outcomes": dict(sorted(logs.outcomes.items())),
        "log_events": {key: logs.events[key] for key in sorted(logs.events)},
        "log_samples": logs.samples,
        "sigterm_exit_seconds_max": max(outcome.sigterm_exit_seconds, default=None),
        "resolve_customer_calls": outcome.calls,
        "failures": failures,
        "ok": not failures,
    }


# --- the report -----------------------------------------------------------------------


def _events(result: Mapping[str, Any], *names: str) -> str:
    counts = result["log_events"]
    return " / ".join(str(counts.get(name, 0)) for name in names)


def _poison(result: Mapping[str, Any]) -> str:
    return f"{result['poison_in_dlq_with_reason']} / {result['poison_tokens']}"


ROWS: Final = (
    ("outage (seconds)", lambda r: f"{r['outage_seconds']:.0f}"),
    ("idempotency table", lambda r: "on" if r["idempotency"] else "off"),
    (
        "messages sent / during the outage",
        lambda r: f"{r['messages_sent']} / {r['messages_during_outage']}",
    ),
    (
        "tokens (distinct) / good ones",
        lambda r: f"{r['tokens_sent_distinct']} / {r['good_tokens']}",
    ),
    (
        "on the queue at begin / recovery",
        lambda r: f"{r['on_queue_at_begin']} / {r['on_queue_at_recovery']}",
    ),
    ("published (distinct good tokens)", lambda r: r["published_distinct"]),
    (
        "  during the outage / after recovery",
        lambda r: f"{r['published_during_outage']} / {r['published_after_recovery']}",
    ),
    (
        "duplicate events (tokens sent twice)",
        lambda r: f"{r['duplicates']} ({r['duplicates_of_tokens_enqueued_twice']})",
    ),
    ("poison in DLQ with its reason / poison", _poison),
    ("in DLQ: good tokens (must be 0)", lambda r: r["good_tokens_in_dlq"]),
    ("in DLQ: no reason (must be 0)", lambda r: r["dlq_without_reason"]),
    ("lost / wrong / left", lambda r: f"{r['lost']} / {r['wrong']} / {r['left_in_source_queue']}"),
    ("recovery -> first publish (s)", lambda r: r["recovery_to_first_publish_seconds"]),
    ("recovery -> last good publish (s)", lambda r: r["recovery_to_last_good_publish_seconds"]),
    ("recovery -> last fault_cleared (s)", lambda r: r["recovery_to_last_fault_cleared_seconds"]),
    ("recovery -> queue empty (s)", lambda r: r["recovery_to_drained_seconds"]),
    (
        "outage's holds / longest (s)",
        lambda r: f"{r['outage_holds']} / {r['longest_hold_seconds']}",
    ),
    ("other holds (DisabledApi ...)", lambda r: sum(r["other_holds"].values())),
    (
        "log: configuration_fault / outage / fault_cleared",
        lambda r: _events(r, *HOLD_EVENTS, "fault_cleared"),
    ),
    ("receive_failed / publish_failed", lambda r: _events(r, "receive_failed", "publish_failed")),
    ("ResolveCustomer calls", lambda r: r["resolve_customer_calls"].get("total")),
    ("slowest exit after SIGTERM (s)", lambda r: r["sigterm_exit_seconds_max"]),
    ("result", lambda r: "ok" if r["ok"] else "FAILED"),
)


def render(results: Sequence[Mapping[str, Any]]) -> str:
    header = ["", *(result["scenario"] for result in results)]
    table = [header, *([label, *(str(cell(r)) for r in results)] for label, cell in ROWS)]
    widths = [max(len(row[n]) for row in table) for n in range(len(header))]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True))
        for row in table
    ]
    for result in results:
        held = ", ".join(f"{k} {v}s" for k, v in result["longest_hold_by_component"].items())
        others = ", ".join(f"{k} x{v}" for k, v in result["other_holds"].items())
        lines.append(
            f"{result['scenario']}: {result['outage']}; longest hold by component: {held or '-'};"
            f" other holds: {others or '-'}; last good tokens published:"
            f" {', '.join(result['last_good_tokens_published']) or '-'}"
        )
        lines.extend(f"  FAILURE: {failure}" for failure in result["failures"][:20])
    ok = all(result["ok"] for result in results)
    lines.append("RESULT: " + ("ok" if ok else "FAILED"))
    return "\n".join(lines)


# --- the run --------------------------------------------------------------------------


@contextlib.contextmanager
def shared_services(dynamodb: bool) -> Iterator[Shared]:
    with contextlib.ExitStack() as stack:
        localstack = stack.enter_context(localstack_server())
        table = stack.enter_context(moto_server()) if dynamodb else None
        yield Shared(localstack, table)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    scenarios = [SCENARIOS[name] for name in args.scenarios]
    results = []
    needs_table = args.idempotency or any(s.idempotency for s in scenarios)
    with shared_services(needs_table) as shared:
        for scenario in scenarios:
            result = run_scenario(scenario, args, shared)
            print(render([result]), flush=True)
            results.append(result)
    return results


def _scenarios(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - SCENARIOS.keys())
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}"
        )
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--scenarios",
        type=_scenarios,
        default=list(DEFAULT_SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (default: {','.join(DEFAULT_SCENARIOS)})",
    )
    parser.add_argument(
        "--tokens", type=int, default=600, help="distinct tokens per scenario (%(default)s)"
    )
    parser.add_argument(
        "--second-wave",
        type=float,
        default=0.25,
        help="share of the messages enqueued halfway through the outage (%(default)s)",
    )
    parser.add_argument("--workers", type=int, default=3, help="worker processes (%(default)s)")
    parser.add_argument(
        "--start-at",
        type=float,
        default=0.2,
        help="share of the first wave gone when the outage begins (%(default)s)",
    )
    parser.add_argument(
        "--credentials-fault-seconds",
        type=float,
        default=None,
        help="length of the ResolveCustomer credentials fault (600; quick 60)",
    )
    parser.add_argument(
        "--cut-seconds",
        type=float,
        default=None,
        help="length of each endpoint cut (60; quick 20)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: faults of 60 s (credentials), 20 s (cuts)",
    )
    parser.add_argument(
        "--recovery-target",
        type=float,
        default=60.0,
        help="seconds from recovery to the last good token published, at most (%(default)s)",
    )
    parser.add_argument(
        "--drain-limit",
        type=float,
        default=600.0,
        help="seconds after recovery before giving up on the queue draining (%(default)s)",
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.1, help="ResolveCustomer 5xx share throughout"
    )
    parser.add_argument(
        "--idempotency",
        action="store_true",
        help="the idempotency table in every scenario (dynamodb always has it)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the token mix")
    parser.add_argument("--json-out", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--log-dir", default="bench/results/outage-logs", help="worker logs (%(default)s)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    if args.credentials_fault_seconds is None:
        args.credentials_fault_seconds = 60.0 if quick else 600.0
    if args.cut_seconds is None:
        args.cut_seconds = 20.0 if quick else 60.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results = run(args)
    print()
    print(render(results))
    ok = all(result["ok"] for result in results)
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        options = {
            key: value for key, value in vars(args).items() if key not in {"json_out", "log_dir"}
        }
        document = {
            "options": options,
            "seconds_total": round(time.monotonic() - started, 1),
            "scenarios": results,
            "ok": ok,
        }
        args.json_out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

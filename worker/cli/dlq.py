"""``regworker dlq stats|peek|replay|redrive``: the command line of ``worker.ops.dlq``.

Settings are read once, here: ``--dlq-url`` and ``--to`` fall back to
REGWORKER_DLQ_URL and REGWORKER_QUEUE_URL, ``--region`` to the one region rule
(``worker.aws.region``); endpoints and credentials come from the standard AWS variables
via boto3.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

import click
from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.localstack import LocalStackClientMissing
from worker.aws.region import region_from
from worker.cli import dlq_help
from worker.cli.base import Checked, RawEpilogCommand, RawHelpGroup
from worker.cli.errors import UsageError
from worker.cli.output import ProgressBar, plain_table
from worker.core.errors import DeadLetterReason
from worker.ops.dlq.audit import AuditLog
from worker.ops.dlq.model import REASON_CHOICES, UNKNOWN_REASON
from worker.ops.dlq.pacing import StopFlag, sigint_stops
from worker.ops.dlq.redrive import describe_move_task, start_redrive, wait_for_redrive
from worker.ops.dlq.replay import Replayer
from worker.ops.dlq.report import (
    StatsReport,
    collect_stats,
    day,
    describe_message,
    peek,
    render_message,
    unreleased_note,
)
from worker.ops.dlq.selection import DEFAULT_MAX_REPLAYS, ReplayOptions
from worker.ops.dlq.summary import ReplaySummary
from worker.ops.dlq.target import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    DlqError,
    Target,
    describe_error,
    sqs_client,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import ListMessageMoveTasksResultEntryTypeDef

Destination = Literal["none", "optional", "required"]


def target_from(
    params: Mapping[str, Any], environ: Mapping[str, str], *, destination: Destination = "none"
) -> Target:
    """The DLQ (and destination) from the parsed options ``params``, else ``environ``."""
    dlq_url = _queue_url(params["dlq_url"], environ, "--dlq-url", "REGWORKER_DLQ_URL")
    region = region_from(environ, params["region"])
    localstack = bool(params["localstack"])
    if destination == "none":
        return Target(dlq_url, region, localstack)
    to = params.get("to")
    if destination == "required":
        destination_url = _queue_url(to, environ, "--to", "REGWORKER_QUEUE_URL")
    else:  # a queue URL or ARN, or nothing at all
        destination_url = to or environ.get("REGWORKER_QUEUE_URL", "")
    if destination_url == dlq_url:
        raise UsageError("--to: the destination must differ from the DLQ")
    return Target(dlq_url, region, localstack, destination_url)


def _queue_url(value: str | None, environ: Mapping[str, str], option: str, variable: str) -> str:
    url = value or environ.get(variable, "")
    if not url:
        raise UsageError(f"missing {option}: pass {option} or set {variable}")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{option} / {variable}: not an SQS queue URL (http:// or https://)")
    return url


def parse_reason(text: str) -> str:
    wanted = text.strip().lower()
    if wanted in {"unknown", UNKNOWN_REASON.lower()}:
        return UNKNOWN_REASON
    for reason in DeadLetterReason:
        if reason.value.lower() == wanted:
            return reason.value
    raise ValueError(f"unknown reason {text!r}: one of {', '.join(REASON_CHOICES)}")


_DURATION = re.compile(r"(\d+)([smhdw])")
_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``, ``1w`` or combinations such as ``1h30m``."""
    compact = text.strip().lower()
    if not compact or _DURATION.sub("", compact):
        raise ValueError(f"{text!r} is not a duration such as 30m, 2h, 1d, 1h30m")
    seconds = sum(
        int(number) * _DURATION_UNITS[unit] for number, unit in _DURATION.findall(compact)
    )
    return timedelta(seconds=seconds)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{text!r} is not a whole number of at least 1")
    return value


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a whole number of at least 0")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ValueError(f"{text!r} is not a positive number")
    return value


def _move_rate(text: str) -> int:
    value = _positive_int(text)
    if value > 500:
        raise ValueError("at most 500 messages per second (SQS's limit)")
    return value


def _common_options(command: Callable[..., int]) -> Callable[..., int]:
    options = [
        click.option("--dlq-url", metavar="URL", help="the DLQ (else REGWORKER_DLQ_URL)"),
        click.option(
            "--region",
            help="AWS region (else REGWORKER_AWS_REGION, AWS_REGION, AWS_DEFAULT_REGION, the"
            " profile's, else us-east-1)",
        ),
        click.option(
            "--localstack",
            is_flag=True,
            help="talk to LocalStack via localstack-client (LOCALSTACK_HOST, default"
            " localhost:4566)",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _action(
    name: str, help_text: str, epilog: str
) -> Callable[[Callable[..., int]], click.Command]:
    return group.command(
        name,
        cls=RawEpilogCommand,
        short_help=help_text,
        help=help_text[0].upper() + help_text[1:] + ".",
        epilog=epilog,
    )


_reason_option = click.option(
    "--reason",
    type=Checked("REASON", parse_reason),
    multiple=True,
    help="only this reason (repeatable; Unknown = moved by the redrive policy)",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON object")


@click.group(
    "dlq",
    cls=RawHelpGroup,
    help=dlq_help.DESCRIPTION,
    epilog=dlq_help.DLQ_EPILOG,
    options_metavar="",
    subcommand_metavar="ACTION [OPTIONS]...",
    no_args_is_help=False,  # "Missing command." and exit 2, not the help
)
def group() -> None:
    pass


command = group  # what worker.cli's registry loads


@_action(
    "stats",
    "count DLQ messages by reason, with the oldest and newest failure",
    dlq_help.STATS_EPILOG,
)
@_common_options
@_json_option
def stats_command(**params: Any) -> int:
    return _run_action("stats", params, _stats, "none")


@_action("peek", "show DLQ messages without consuming them", dlq_help.PEEK_EPILOG)
@_common_options
@click.option("--max", "max_", type=Checked("N", _positive_int), default=10, help="at most N (10)")
@_reason_option
@_json_option
def peek_command(**params: Any) -> int:
    return _run_action("peek", params, _peek, "none")


@_action(
    "replay", "send DLQ messages back to the source queue, selectively", dlq_help.REPLAY_EPILOG
)
@_common_options
@_reason_option
@click.option(
    "--older-than",
    type=Checked("DURATION", parse_duration),
    metavar="DURATION",
    help="failed at least this long ago (30m, 2h, 1d, 1h30m)",
)
@click.option(
    "--newer-than",
    type=Checked("DURATION", parse_duration),
    metavar="DURATION",
    help="failed at most this long ago",
)
@click.option("--max", "max_", type=Checked("N", _positive_int), help="move at most N messages")
@click.option("--dry-run", is_flag=True, help="show what would move; change nothing")
@click.option("--rate", type=Checked("N", _positive_float), help="at most N messages per second")
@click.option("--to", metavar="QUEUE_URL", help="destination (else REGWORKER_QUEUE_URL)")
@click.option(
    "--include-terminal",
    is_flag=True,
    help="replay InvalidToken, ExpiredToken and MalformedMessage too",
)
@click.option(
    "--max-replays",
    type=Checked("N", _non_negative_int),
    default=DEFAULT_MAX_REPLAYS,
    help=f"refuse messages already replayed N times ({DEFAULT_MAX_REPLAYS})",
)
@click.option("--audit-log", metavar="FILE", help="append one JSON line per moved message")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def replay_command(**params: Any) -> int:
    return _run_action("replay", params, _replay, "required")


@_action("redrive", "move every DLQ message with SQS's native move task", dlq_help.REDRIVE_EPILOG)
@_common_options
@click.option(
    "--to",
    metavar="ARN",
    help="destination queue ARN or URL (else REGWORKER_QUEUE_URL, else the queues the"
    " messages came from)",
)
@click.option("--rate", type=Checked("N", _move_rate), help="at most N messages per second (1-500)")
@click.option("--wait", is_flag=True, help="poll until the task finishes")
@click.option("--json", "as_json", is_flag=True, help="print the task as JSON")
def redrive_command(**params: Any) -> int:
    return _run_action("redrive", params, _redrive, "optional")


Params = Mapping[str, Any]
Action = Callable[[Params, Target], int]


def _run_action(name: str, params: Params, action: Action, destination: Destination) -> int:
    name = f"regworker dlq {name}"
    try:
        target = target_from(params, os.environ, destination=destination)
        return action(params, target)
    except (UsageError, LocalStackClientMissing) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (DlqError, ClientError, BotoCoreError) as error:
        print(f"{name}: {describe_error(error)}", file=sys.stderr)
        return EXIT_FAILURE


def _print_json(document: Mapping[str, Any]) -> None:
    print(json.dumps(document, indent=2, default=str))


def _stats(params: Params, target: Target) -> int:
    report = collect_stats(sqs_client(target), target.dlq_url)
    if params["as_json"]:
        _print_json(report.to_json())
    else:
        print(stats_text(report))
    return EXIT_OK


def stats_text(report: StatsReport) -> str:
    depth = report.depth
    lines = [
        f"DLQ          {report.queue_url}",
        f"approximate  {depth.total} ({depth.visible} visible, {depth.in_flight} in flight,"
        f" {depth.delayed} delayed)",
        f"scanned      {report.overall.count}",
    ]
    if report.overall.count < depth.visible:
        lines.append(
            "             (fewer than visible: messages arrived meanwhile, or a FIFO"
            " group's later messages stay hidden while its first ones are held)"
        )
    if not report.overall.count:
        return "\n".join([*lines, "", "The DLQ is empty."])
    rows = [
        [reason, str(span.count), day(span.oldest), day(span.newest)]
        for reason, span in [*report.ranked(), ("all", report.overall)]
    ]
    headers = ["REASON", "COUNT", "OLDEST FAILURE", "NEWEST FAILURE"]
    counts = plain_table(headers, rows, right=frozenset({1}))
    return "\n".join([*lines, "", counts, *unreleased_note(report.unreleased)])


def _peek(params: Params, target: Target) -> int:
    messages = peek(sqs_client(target), target.dlq_url, params["max_"], frozenset(params["reason"]))
    if params["as_json"]:
        _print_json(
            {"queue_url": target.dlq_url, "messages": [describe_message(m) for m in messages]}
        )
        return EXIT_OK
    if not messages:
        print("No matching messages." if params["reason"] else "The DLQ is empty.")
        return EXIT_OK
    print(f"{len(messages)} message(s), left in the DLQ:\n")
    print("\n\n".join(render_message(message) for message in messages))
    return EXIT_OK


def replay_options(params: Params) -> ReplayOptions:
    return ReplayOptions(
        reasons=frozenset(params["reason"]),
        older_than=params["older_than"],
        newer_than=params["newer_than"],
        max_messages=params["max_"],
        dry_run=params["dry_run"],
        rate=params["rate"],
        include_terminal=params["include_terminal"],
        max_replays=params["max_replays"],
    )


@contextmanager
def _audit_stream(path: str | None, dry_run: bool) -> Iterator[TextIO | None]:
    if path is None or dry_run:  # a dry run changes nothing, not even the audit file
        yield None
        return
    try:
        stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as error:
        raise UsageError(f"--audit-log: cannot open {path}: {error.strerror}") from None
    with stream:
        yield stream


def _replay(params: Params, target: Target) -> int:
    options = replay_options(params)
    client = sqs_client(target)
    with (
        _audit_stream(params["audit_log"], options.dry_run) as stream,
        ProgressBar(approximate=True) as bar,
    ):
        replayer = Replayer(
            client,
            target.dlq_url,
            target.destination_url,
            options,
            audit=AuditLog(stream, target.destination_url),
            on_progress=bar.update,
        )
        stop = StopFlag()
        with sigint_stops(stop):
            try:
                summary = replayer.run(stop)
            except KeyboardInterrupt:
                summary = replayer.summary
                summary.interrupted = True
            with stop.shield():
                _print_replay(params, summary, options)
    return summary.exit_code


def _print_replay(params: Params, summary: ReplaySummary, options: ReplayOptions) -> None:
    if params["as_json"]:
        _print_json(summary.to_json())
        return
    for planned in summary.would_move:
        print(
            f"would move  {planned['message_id']}  {planned['reason']}"
            f"  replay {planned['replay_count']}->{planned['replay_count'] + 1}"
            f"  token {planned['token_ref'] or '-'}"
        )
    for refused in summary.refused_messages:
        print(
            f"refused     {refused['message_id']}  {refused['reason']}"
            f"  replay_count {refused['replay_count']} (from the message)"
            f"  token {refused['token_ref'] or '-'}"
        )
    print(summary.render(options.max_replays))


def _redrive(params: Params, target: Target) -> int:
    client = sqs_client(target)
    destination = target.destination_url or None
    task = start_redrive(client, target.dlq_url, destination=destination, rate=params["rate"])
    print(
        f"started a move task from {task.source_arn}"
        f" to {destination or 'the queues the messages came from'}",
        file=sys.stderr,
    )
    if not params["wait"]:
        if params["as_json"]:
            _print_json({"task_handle": task.handle, "source_arn": task.source_arn})
        else:
            print(f"task {task.handle}")
            print(f"follow it: aws sqs list-message-move-tasks --source-arn {task.source_arn}")
        return EXIT_OK
    try:
        final = wait_for_redrive(client, task, on_status=_status_printer())
    except KeyboardInterrupt:
        print(
            "regworker dlq redrive: stopped watching; the move task keeps running"
            " (aws sqs cancel-message-move-task stops it)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if params["as_json"]:
        _print_json(dict(final))
    else:
        print(describe_move_task(final))
    if final.get("Status") == "COMPLETED":
        return EXIT_OK
    if destination is None:
        print(dlq_help.NO_SOURCE_HINT, file=sys.stderr)
    return EXIT_FAILURE


def _status_printer() -> Callable[[ListMessageMoveTasksResultEntryTypeDef], None]:
    """Print a status line on stderr whenever it changes."""
    last = ""

    def show(task: ListMessageMoveTasksResultEntryTypeDef) -> None:
        nonlocal last
        line = describe_move_task(task)
        if line != last:
            print(line, file=sys.stderr)
            last = line

    return show

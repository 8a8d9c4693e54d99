"""``regworker dlq stats|peek|replay|redrive``: the command line of ``worker.ops.dlq``.

Settings are read once, here: ``--dlq-url`` and ``--to`` fall back to
REGWORKER_DLQ_URL and REGWORKER_QUEUE_URL, ``--region`` to the one region rule
(``worker.aws.region``); endpoints and credentials come from the standard AWS variables
via boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.localstack import LocalStackClientMissing
from worker.aws.region import region_from
from worker.aws.sqs_wire import queue_depth
from worker.cli import dlq_help
from worker.cli.errors import UsageError
from worker.core.errors import DeadLetterReason
from worker.ops.dlq.audit import AuditLog
from worker.ops.dlq.model import REASON_CHOICES, UNKNOWN_REASON
from worker.ops.dlq.pacing import Progress, StopFlag, sigint_stops
from worker.ops.dlq.redrive import describe_move_task, start_redrive, wait_for_redrive
from worker.ops.dlq.replay import Replayer
from worker.ops.dlq.report import collect_stats, describe_message, peek, render_message
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
    args: argparse.Namespace, environ: Mapping[str, str], *, destination: Destination = "none"
) -> Target:
    dlq_url = _queue_url(args.dlq_url, environ, "--dlq-url", "REGWORKER_DLQ_URL")
    region = region_from(environ, args.region)
    if destination == "none":
        return Target(dlq_url, region, args.localstack)
    if destination == "required":
        destination_url = _queue_url(args.to, environ, "--to", "REGWORKER_QUEUE_URL")
    else:  # a queue URL or ARN, or nothing at all
        destination_url = args.to or environ.get("REGWORKER_QUEUE_URL", "")
    if destination_url == dlq_url:
        raise UsageError("--to: the destination must differ from the DLQ")
    return Target(dlq_url, region, args.localstack, destination_url)


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
    raise argparse.ArgumentTypeError(f"unknown reason {text!r}: one of {', '.join(REASON_CHOICES)}")


_DURATION = re.compile(r"(\d+)([smhdw])")
_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``7d``, ``1w`` or combinations such as ``1h30m``."""
    compact = text.strip().lower()
    if not compact or _DURATION.sub("", compact):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 2h, 1d, 1h30m")
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
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _move_rate(text: str) -> int:
    value = _positive_int(text)
    if value > 500:
        raise argparse.ArgumentTypeError("at most 500 messages per second (SQS's limit)")
    return value


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dlq-url", metavar="URL", help="the DLQ (else REGWORKER_DLQ_URL)")
    common.add_argument(
        "--region",
        help="AWS region (else REGWORKER_AWS_REGION, AWS_REGION, AWS_DEFAULT_REGION, the profile's,"
        " else us-east-1)",
    )
    common.add_argument(
        "--localstack",
        action="store_true",
        help="talk to LocalStack via localstack-client (LOCALSTACK_HOST, default localhost:4566)",
    )
    return common


def _add_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    epilog: str,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    return actions.add_parser(
        name,
        parents=[common],
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dlq",
        description=dlq_help.DESCRIPTION,
        epilog=dlq_help.DLQ_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    common = _common_options()
    _register_stats(actions, common)
    _register_peek(actions, common)
    _register_replay(actions, common)
    _register_redrive(actions, common)


def _add_reason_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reason",
        type=parse_reason,
        action="append",
        default=[],
        help="only this reason (repeatable; Unknown = moved by the redrive policy)",
    )


def _register_stats(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = _add_action(
        actions,
        "stats",
        "count DLQ messages by reason, with the oldest and newest failure",
        dlq_help.STATS_EPILOG,
        common,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=stats_command)


def _register_peek(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = _add_action(
        actions, "peek", "show DLQ messages without consuming them", dlq_help.PEEK_EPILOG, common
    )
    parser.add_argument("--max", type=_positive_int, default=10, help="at most N (%(default)s)")
    _add_reason_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=peek_command)


def _register_replay(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = _add_action(
        actions,
        "replay",
        "send DLQ messages back to the source queue, selectively",
        dlq_help.REPLAY_EPILOG,
        common,
    )
    _add_reason_option(parser)
    parser.add_argument(
        "--older-than",
        type=parse_duration,
        metavar="DURATION",
        help="failed at least this long ago (30m, 2h, 1d, 1h30m)",
    )
    parser.add_argument(
        "--newer-than",
        type=parse_duration,
        metavar="DURATION",
        help="failed at most this long ago",
    )
    parser.add_argument("--max", type=_positive_int, metavar="N", help="move at most N messages")
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would move; change nothing"
    )
    parser.add_argument(
        "--rate", type=_positive_float, metavar="N", help="at most N messages per second"
    )
    parser.add_argument("--to", metavar="QUEUE_URL", help="destination (else REGWORKER_QUEUE_URL)")
    parser.add_argument(
        "--include-terminal",
        action="store_true",
        help="replay InvalidToken, ExpiredToken and MalformedMessage too",
    )
    parser.add_argument(
        "--max-replays",
        type=_non_negative_int,
        default=DEFAULT_MAX_REPLAYS,
        metavar="N",
        help="refuse messages already replayed N times (%(default)s)",
    )
    parser.add_argument(
        "--audit-log", metavar="FILE", help="append one JSON line per moved message"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=replay_command)


def _register_redrive(
    actions: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = _add_action(
        actions,
        "redrive",
        "move every DLQ message with SQS's native move task",
        dlq_help.REDRIVE_EPILOG,
        common,
    )
    parser.add_argument(
        "--to",
        metavar="ARN",
        help="destination queue ARN or URL (else REGWORKER_QUEUE_URL, else the queues the"
        " messages came from)",
    )
    parser.add_argument(
        "--rate", type=_move_rate, metavar="N", help="at most N messages per second (1-500)"
    )
    parser.add_argument("--wait", action="store_true", help="poll until the task finishes")
    parser.add_argument("--json", action="store_true", help="print the task as JSON")
    parser.set_defaults(handler=redrive_command)


Action = Callable[[argparse.Namespace, Target], int]


def _run_action(args: argparse.Namespace, action: Action, destination: Destination) -> int:
    name = f"regworker dlq {args.dlq_command}"
    try:
        target = target_from(args, os.environ, destination=destination)
        return action(args, target)
    except (UsageError, LocalStackClientMissing) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (DlqError, ClientError, BotoCoreError) as error:
        print(f"{name}: {describe_error(error)}", file=sys.stderr)
        return EXIT_FAILURE


def _print_json(document: Mapping[str, Any]) -> None:
    print(json.dumps(document, indent=2, default=str))


def stats_command(args: argparse.Namespace) -> int:
    return _run_action(args, _stats, "none")


def _stats(args: argparse.Namespace, target: Target) -> int:
    report = collect_stats(sqs_client(target), target.dlq_url)
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.render())
    return EXIT_OK


def peek_command(args: argparse.Namespace) -> int:
    return _run_action(args, _peek, "none")


def _peek(args: argparse.Namespace, target: Target) -> int:
    messages = peek(sqs_client(target), target.dlq_url, args.max, frozenset(args.reason))
    if args.json:
        _print_json(
            {"queue_url": target.dlq_url, "messages": [describe_message(m) for m in messages]}
        )
        return EXIT_OK
    if not messages:
        print("No matching messages." if args.reason else "The DLQ is empty.")
        return EXIT_OK
    print(f"{len(messages)} message(s), left in the DLQ:\n")
    print("\n\n".join(render_message(message) for message in messages))
    return EXIT_OK


def replay_command(args: argparse.Namespace) -> int:
    return _run_action(args, _replay, "required")


def replay_options(args: argparse.Namespace) -> ReplayOptions:
    return ReplayOptions(
        reasons=frozenset(args.reason),
        older_than=args.older_than,
        newer_than=args.newer_than,
        max_messages=args.max,
        dry_run=args.dry_run,
        rate=args.rate,
        include_terminal=args.include_terminal,
        max_replays=args.max_replays,
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


def _replay(args: argparse.Namespace, target: Target) -> int:
    options = replay_options(args)
    client = sqs_client(target)
    expected = queue_depth(client, target.dlq_url).visible
    if options.max_messages is not None:
        expected = min(expected, options.max_messages)
    with _audit_stream(args.audit_log, options.dry_run) as stream:
        replayer = Replayer(
            client,
            target.dlq_url,
            target.destination_url,
            options,
            audit=AuditLog(stream, target.destination_url),
            progress=Progress(sys.stderr, expected),
        )
        stop = StopFlag()
        with sigint_stops(stop):
            try:
                summary = replayer.run(stop)
            except KeyboardInterrupt:
                summary = replayer.summary
                summary.interrupted = True
            with stop.shield():
                _print_replay(args, summary, options)
    return summary.exit_code


def _print_replay(args: argparse.Namespace, summary: ReplaySummary, options: ReplayOptions) -> None:
    if args.json:
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


def redrive_command(args: argparse.Namespace) -> int:
    return _run_action(args, _redrive, "optional")


def _redrive(args: argparse.Namespace, target: Target) -> int:
    client = sqs_client(target)
    destination = target.destination_url or None
    task = start_redrive(client, target.dlq_url, destination=destination, rate=args.rate)
    print(
        f"started a move task from {task.source_arn}"
        f" to {destination or 'the queues the messages came from'}",
        file=sys.stderr,
    )
    if not args.wait:
        if args.json:
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
    if args.json:
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

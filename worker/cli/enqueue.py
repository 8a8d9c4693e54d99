"""``regworker enqueue``: tokens from arguments or a file, sent as the web tier sends
them (``worker.ops.enqueue``), with a progress bar on a terminal and a report that names
tokens by line and hash prefix, never in full.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import click
from botocore.exceptions import BotoCoreError

from worker.aws.region import region_from
from worker.cli.errors import UsageError
from worker.cli.output import ProgressBar
from worker.ops.enqueue import Enqueuer, EnqueueReport, InvalidRequest, build_body

MAX_FAILURES_SHOWN: Final = 20


@dataclass(frozen=True)
class TokenLine:
    where: str  # "line 12" or "argument 3": a place a person can find, not the token
    token: str = field(repr=False)


ENQUEUE_HELP = (
    "Put registration tokens on the queue as the web tier does: each one is"
    " checked, wrapped in the JSON envelope and sent in batches of 10. Tokens are never"
    " printed: reports name them by line (or argument) and a 12-hex sha256 prefix."
)
ENQUEUE_EPILOG = (
    "The queue URL comes from --queue-url, else REGWORKER_QUEUE_URL; AWS endpoints"
    " and credentials from the standard AWS variables. Exit codes: 0 all sent, 1 some"
    " failed, 2 bad usage."
)


@click.command("enqueue", help=ENQUEUE_HELP, epilog=ENQUEUE_EPILOG)
@click.argument("tokens", nargs=-1, metavar="[TOKEN]...")
@click.option(
    "--file",
    "path",
    metavar="FILE",
    help="read tokens from FILE, one a line ('-' reads stdin); blank lines and lines"
    " starting with # are skipped",
)
@click.option("--queue-url", help="the registration queue (REGWORKER_QUEUE_URL)")
@click.option("--offer-type", help="offer type for every token, e.g. free-trial")
@click.option(
    "--region",
    help="AWS region (default: REGWORKER_AWS_REGION, else AWS_REGION, else"
    " AWS_DEFAULT_REGION, else the AWS profile's, else us-east-1)",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def command(
    tokens: tuple[str, ...],
    path: str | None,
    queue_url: str | None,
    offer_type: str | None,
    region: str | None,
    as_json: bool,
) -> int:
    return run_command(
        tokens,
        path=path,
        queue_url=queue_url,
        offer_type=offer_type,
        region=region,
        as_json=as_json,
    )


def run_command(
    tokens: Sequence[str],
    *,
    path: str | None = None,
    queue_url: str | None = None,
    offer_type: str | None = None,
    region: str | None = None,
    as_json: bool = False,
) -> int:
    try:
        queue_url = _queue_url(queue_url or os.environ.get("REGWORKER_QUEUE_URL", ""))
        lines = _token_lines(tokens, path)
        _check_offer_type(offer_type)
        enqueuer = Enqueuer(queue_url, region=region_from(os.environ, region))
    except (UsageError, BotoCoreError) as error:
        print(f"regworker enqueue: {error}", file=sys.stderr)
        return 2
    report = _enqueue_with_progress(enqueuer, lines, offer_type)
    if as_json:
        print(json.dumps(_report_document(report, lines, queue_url), indent=2))
    else:
        _print_failures(report, lines)
        print(f"sent {len(report.sent)}, failed {len(report.failed)}")
    return 0 if report.ok else 1


def _queue_url(value: str) -> str:
    if not value:
        raise UsageError("no queue URL: pass --queue-url or set REGWORKER_QUEUE_URL")
    if not value.startswith(("http://", "https://")):
        raise UsageError("the queue URL must start with http:// or https://")
    return value


def _check_offer_type(offer_type: str | None) -> None:
    if offer_type is None:
        return
    try:
        build_body("probe", offer_type)
    except InvalidRequest as error:
        raise UsageError(f"--offer-type: {error}") from None


def _token_lines(arguments: Sequence[str], path: str | None) -> list[TokenLine]:
    if arguments and path:
        raise UsageError("give tokens as arguments or --file, not both")
    if path is None:
        lines = [TokenLine(f"argument {n}", text) for n, text in enumerate(arguments, 1)]
    else:
        lines = [TokenLine(f"line {n}", text) for n, text in enumerate(_read_lines(path), 1)]
    tokens = [
        TokenLine(line.where, line.token.strip())
        for line in lines
        if line.token.strip() and not line.token.lstrip().startswith("#")
    ]
    if not tokens:
        raise UsageError("no tokens given (pass TOKEN... or --file FILE)")
    return tokens


def _read_lines(path: str) -> list[str]:
    try:
        if path == "-":
            return sys.stdin.read().splitlines()
        with open(path, encoding="utf-8") as source:
            return source.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None


def _enqueue_with_progress(
    enqueuer: Enqueuer, lines: Sequence[TokenLine], offer_type: str | None
) -> EnqueueReport:
    with ProgressBar(len(lines)) as bar:
        return enqueuer.enqueue_many(
            (line.token for line in lines), progress=bar.advance, offer_type=offer_type
        )


def _print_failures(report: EnqueueReport, lines: Sequence[TokenLine]) -> None:
    for failure in report.failed[:MAX_FAILURES_SHOWN]:
        where = lines[failure.index].where
        print(
            f"regworker enqueue: {where} (token {failure.token_ref}): {failure.reason}",
            file=sys.stderr,
        )
    hidden = len(report.failed) - MAX_FAILURES_SHOWN
    if hidden > 0:
        print(
            f"regworker enqueue: ... and {hidden} more failures (--json lists all)", file=sys.stderr
        )


def _report_document(
    report: EnqueueReport, lines: Sequence[TokenLine], queue_url: str
) -> dict[str, Any]:
    return {
        "queue_url": queue_url,
        "sent": len(report.sent),
        "failed": len(report.failed),
        "messages": [
            {
                "where": lines[item.index].where,
                "token_sha256_prefix": item.token_ref,
                "message_id": item.message_id,
            }
            for item in report.sent
        ],
        "failures": [
            {
                "where": lines[item.index].where,
                "token_sha256_prefix": item.token_ref,
                "reason": item.reason,
            }
            for item in report.failed
        ],
    }

"""``regworker provision``: its options, the settings it prints or writes, its progress.

What it creates, and how, is ``worker.ops.provision``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import click
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from worker.aws.localstack import localstack_session
from worker.aws.region import region_from
from worker.cli.base import Checked, RawEpilogCommand
from worker.core.faults import describe, error_code
from worker.core.settings import Sink
from worker.local.emulator import DEFAULT_PORT
from worker.ops.provision import (
    DEFAULT_EVENT_SOURCE,
    DEFAULT_MAX_RECEIVES,
    DEFAULT_NAME,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    MAX_RECEIVE_COUNT,
    NAME_PATTERN,
    REDRIVE_MARGIN,
    ProvisionError,
    Resources,
    localstack_env,
    provision,
)

EMULATOR_ENDPOINT = f"http://127.0.0.1:{DEFAULT_PORT}"


def resource_prefix(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r}: 1-44 letters, digits, '-' or '_' (it prefixes every resource name)"
        )
    return value


def max_receives_arg(value: str) -> int:
    highest = MAX_RECEIVE_COUNT - REDRIVE_MARGIN
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r}: not a whole number") from None
    if not 1 <= number <= highest:
        raise ValueError(
            f"{number}: must be within 1..{highest} (the redrive policy adds {REDRIVE_MARGIN}"
            f" and SQS allows at most {MAX_RECEIVE_COUNT})"
        )
    return number


def event_source_arg(value: str) -> str:
    if not value or value.startswith("aws.") or len(value) > 256:
        raise ValueError(
            f"{value!r}: 1-256 characters, not starting with 'aws.' (reserved for AWS)"
        )
    return value


PROVISION_HELP = (
    "Create (or find) the SQS queue, its DLQ with a redrive policy, and the"
    " sink: an EventBridge bus with a CustomerRegistered rule, or an SNS topic. Endpoints"
    " and credentials come from the standard AWS variables. Prints the REGWORKER_*"
    " settings as KEY=value lines; progress goes to stderr. Running it again changes"
    " nothing and prints the same settings."
)
PROVISION_EPILOG = (
    "examples:\n"
    "  regworker provision > .env\n"
    "  regworker provision --name billing --sink sns --fifo --idempotency-table\n"
    "  regworker provision --localstack --tap --json\n"
    "  regworker provision --output /config/regworker.env"
)


@click.command("provision", cls=RawEpilogCommand, help=PROVISION_HELP, epilog=PROVISION_EPILOG)
@click.option(
    "--name",
    type=Checked("PREFIX", resource_prefix),
    default=DEFAULT_NAME,
    metavar="PREFIX",
    help=f"prefix of every resource name ({DEFAULT_NAME})",
)
@click.option(
    "--sink", type=click.Choice([sink.value for sink in Sink]), default=Sink.EVENTBRIDGE.value
)
@click.option("--fifo", is_flag=True, help="FIFO queue and DLQ (with --sink sns a FIFO topic)")
@click.option(
    "--max-receives",
    type=Checked("N", max_receives_arg),
    default=DEFAULT_MAX_RECEIVES,
    metavar="N",
    help=f"deliveries before the worker dead-letters ({DEFAULT_MAX_RECEIVES}); the queue's"
    f" redrive policy fires at N+{REDRIVE_MARGIN}",
)
@click.option(
    "--event-source",
    type=Checked("TEXT", event_source_arg),
    default=DEFAULT_EVENT_SOURCE,
    help=f"Source of published events, matched by the rule ({DEFAULT_EVENT_SOURCE})",
)
@click.option(
    "--idempotency-table",
    is_flag=True,
    help=f"also a DynamoDB table <name>-idempotency ({IDEMPOTENCY_KEY}, TTL on"
    f" {IDEMPOTENCY_TTL_ATTRIBUTE})",
)
@click.option("--tap", is_flag=True, help="also a queue subscribed to the sink, for testing")
@click.option("--json", "as_json", is_flag=True, help="print the settings as JSON")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="write the settings to FILE",
)
@click.option(
    "--region",
    help="AWS region (default: REGWORKER_AWS_REGION, else AWS_REGION, else"
    " AWS_DEFAULT_REGION, else the AWS profile's, else us-east-1)",
)
@click.option(
    "--localstack",
    is_flag=True,
    help="aim at LocalStack (LOCALSTACK_HOST, default localhost:4566) with dummy credentials;"
    " the settings then also hold the AWS_* variables the other commands need to reach it",
)
@click.option(
    "--metering-endpoint",
    default=EMULATOR_ENDPOINT,
    show_default=True,
    metavar="URL",
    help="with --localstack, where ResolveCustomer is answered (LocalStack does not"
    " emulate it; `regworker emulator` does, on this address by default)",
)
def command(**params: Any) -> int:
    return provision_command(SimpleNamespace(**params))


def provision_command(args: SimpleNamespace) -> int:
    region = region_from(os.environ, args.region)
    try:
        session = (
            localstack_session(region) if args.localstack else boto3.Session(region_name=region)
        )
    except ImportError as error:
        return _fail(str(error), 2)
    try:
        resources = provision(
            session,
            args.name,
            Sink(args.sink),
            max_receives=args.max_receives,
            event_source=args.event_source,
            tap=args.tap,
            fifo=args.fifo,
            idempotency_table=args.idempotency_table,
            report=_progress,
        )
    except (NoCredentialsError, PartialCredentialsError) as error:
        return _fail(describe(error), 2)
    except ClientError as error:
        return _fail(f"{error_code(error)}: {describe(error)}", 1)
    except (BotoCoreError, ProvisionError) as error:
        return _fail(describe(error), 1)
    env = output_env(
        resources,
        region,
        localstack=args.metering_endpoint if args.localstack else None,
        as_json=args.as_json,
    )
    text = render_settings(env, as_json=args.as_json)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomically(args.output, text)
        _progress(f"settings written to {args.output}")
    return 0


def output_env(
    resources: Resources, region: str, *, localstack: str | None, as_json: bool
) -> dict[str, str]:
    """What is printed: the worker's settings; with --localstack (``localstack`` is then
    the ResolveCustomer endpoint) first the endpoints, region and credentials that reach
    it; with --json the tap queue too (a script that reads events needs it, a worker
    does not)."""
    env = localstack_env(region, localstack) if localstack is not None else {}
    env.update(resources.settings_env())
    if as_json and resources.tap_queue_url:
        env["REGWORKER_TAP_QUEUE_URL"] = resources.tap_queue_url
    return env


def render_settings(env: Mapping[str, str], *, as_json: bool = False) -> str:
    if as_json:
        return json.dumps(env, indent=2) + "\n"
    return "".join(f"{key}={value}\n" for key, value in env.items())


def write_atomically(path: Path, text: str) -> None:
    """A reader (a worker starting next to this) sees the old file or the new, never half."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def _progress(line: str) -> None:
    print(f"regworker provision: {line}", file=sys.stderr)


def _fail(message: str, code: int) -> int:
    print(f"regworker provision: {message}", file=sys.stderr)
    return code

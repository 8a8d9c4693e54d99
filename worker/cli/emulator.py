"""``regworker emulator``: the options and the process of the local ResolveCustomer
emulator (what it answers is ``worker.local.emulator``)."""

from __future__ import annotations

import asyncio
import logging
import sys
from types import SimpleNamespace
from typing import Any

import click

from worker.cli.base import RawHelpCommand
from worker.local.emulator import (
    DEFAULT_PORT,
    DEFAULT_PRODUCT_CODE,
    EmulatorConfig,
    InvalidOption,
    serve,
)

_DESCRIPTION = """\
Serve a local emulator of the AWS Marketplace Metering ResolveCustomer API.
It speaks the real wire protocol, so boto3, aiobotocore and the AWS CLI work
against it with --endpoint-url. Signatures are not checked.

Token rules (deterministic):
  <anything else>       resolves; fields derived from sha256 of the token
  invalid-...           InvalidTokenException
  expired-...           ExpiredTokenException
  disabled-...          DisabledApiException
  throttle-<n>-...      ThrottlingException for the first n calls, then success
  error-<n>-...         InternalServiceErrorException (HTTP 500) n times, then success
  slow-<ms>-...         success after <ms> milliseconds
  product-<code>-...    success with ProductCode <code>

Side endpoints:
  GET /_emulator/health     {"status": "ok"}
  GET /_emulator/stats      calls by outcome and by token sha256 prefix
  POST /_emulator/reset     clears counters, per-token state and the fault switch
  POST /_emulator/faults    {"code": "<code>", "seconds": <s>}: every ResolveCustomer
                            call answers <code> for <s> seconds (0 < s <= 86400),
                            before the TPS cap and the token rules; codes:
                            UnrecognizedClientException, AccessDeniedException,
                            ThrottlingException, DisabledApiException (HTTP 400),
                            InternalServiceErrorException (HTTP 500)
  GET /_emulator/faults     the active fault and its seconds_left, or null
  DELETE /_emulator/faults  clears the fault at once"""

_AWS_EXAMPLE = (
    "aws meteringmarketplace resolve-customer --registration-token abc"
    f" --endpoint-url http://127.0.0.1:{DEFAULT_PORT} --region us-east-1"
)
_EPILOG = f"""\
examples:
  regworker emulator --port 8642
  regworker emulator --port 0 --tps 5 --fault-rate 0.1 --seed 42
  {_AWS_EXAMPLE}
  curl http://127.0.0.1:8642/_emulator/stats
  curl -X POST http://127.0.0.1:8642/_emulator/faults \\
       -d '{{"code": "UnrecognizedClientException", "seconds": 600}}'

On start it prints one line, "emulator listening on http://HOST:PORT", with the
real port (so --port 0 works). It stops on SIGINT or SIGTERM with exit code 0."""


@click.command("emulator", cls=RawHelpCommand, help=_DESCRIPTION, epilog=_EPILOG)
@click.option("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
@click.option(
    "--port", type=int, default=DEFAULT_PORT, help=f"port, 0 picks a free one ({DEFAULT_PORT})"
)
@click.option(
    "--product-code", default=DEFAULT_PRODUCT_CODE, help="ProductCode answered by default"
)
@click.option("--latency-ms", type=int, default=0, help="delay added to every call")
@click.option("--tps", type=float, default=0.0, help="rate cap, 0 = unlimited")
@click.option(
    "--fault-rate", type=float, default=0.0, help="share of calls answering HTTP 500 (0..1)"
)
@click.option("--seed", type=int, default=0, help="seed for --fault-rate draws")
@click.option(
    "--reject-access-key",
    multiple=True,
    metavar="AKID",
    help="answer UnrecognizedClientException to this access key id (repeatable)",
)
def command(**params: Any) -> int:
    return run(SimpleNamespace(**params))


def config_from_args(args: SimpleNamespace) -> EmulatorConfig:
    """Raises InvalidOption for out-of-range values."""
    if not 0 <= args.port <= 65535:
        raise InvalidOption("port", args.port, "must be within 0..65535")
    return EmulatorConfig(
        product_code=args.product_code,
        latency_ms=args.latency_ms,
        tps=args.tps,
        fault_rate=args.fault_rate,
        seed=args.seed,
        reject_access_keys=frozenset(args.reject_access_key),
    )


def run(args: SimpleNamespace) -> int:
    """Serve until SIGINT/SIGTERM (exit 0); 2 for invalid options, 1 if it cannot listen."""
    try:
        config = config_from_args(args)
    except InvalidOption as exc:
        print(f"regworker emulator: {exc}", file=sys.stderr)
        return 2
    # WARNING, not INFO: a parent that reads only stdout must never block on a full stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(serve(config, args.host, args.port))
    except OSError as exc:
        print(
            f"regworker emulator: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0

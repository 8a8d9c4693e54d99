"""``regworker demo``: the whole flow on a local AWS (the flow is ``worker.local.demo``)."""

from __future__ import annotations

import os
import sys

import click

from worker.cli.base import RawEpilogCommand
from worker.core.settings import Sink
from worker.local.demo import run_demo

DEMO_HELP = (
    "Start moto server and the ResolveCustomer emulator, enqueue a mixed"
    " batch, run the worker until the queue is drained and print what happened."
    " Needs the 'local' extra (pip install 'regworker[local]')."
)


@click.command(
    "demo",
    cls=RawEpilogCommand,
    help=DEMO_HELP,
    epilog="examples:\n  regworker demo\n  regworker demo --sink sns --good 100",
)
@click.option("--sink", type=click.Choice([s.value for s in Sink]), default=Sink.EVENTBRIDGE.value)
@click.option("--good", type=int, default=40, help="ordinary tokens to enqueue")
def command(sink: str, good: int) -> int:
    for key in [k for k in os.environ if k.startswith(("AWS_", "REGWORKER_"))]:
        del os.environ[key]  # the demo must never reach a real account
    try:
        return run_demo(Sink(sink), good)
    except RuntimeError as error:
        print(f"regworker demo: {error}", file=sys.stderr)
        return 1

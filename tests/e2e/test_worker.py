"""The real worker against moto server and the ResolveCustomer emulator: one run of
every outcome per sink, and the command line as a process.

The outcome matrix case by case runs in-process (tests/core/test_handler.py and
test_consumer.py); these tests keep what needs the wire. Moved there, with their
assertions: test_events_never_carry_the_token (merged here into test_every_outcome,
which checks the sink's raw bodies, and into test_handler.py::test_every_outcome_in_one_run),
test_same_token_twice_gives_the_same_event_id,
test_a_sink_gone_after_start_keeps_the_message,
test_rejected_credentials_never_blame_the_token and
test_never_holds_more_than_max_in_flight (see those modules' docstrings).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy_boto3_sqs.client import SQSClient

from tests.support import cli_run_until_empty, every_outcome
from worker.ops.provision import Resources


async def test_every_outcome(sqs: SQSClient, resources: Resources) -> None:
    await every_outcome(sqs, resources)


@pytest.mark.parametrize("resources", ["eventbridge"], indirect=True)
def test_cli_run_until_empty(
    sqs: SQSClient, resources: Resources, aws_env: dict[str, str], tmp_path: Path
) -> None:
    cli_run_until_empty(sqs, resources, aws_env, tmp_path)

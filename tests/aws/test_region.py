"""The one region rule (worker.aws.region): its order, and that the worker's settings
and every tool follow it, so one variable moves them all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest

from tests.support import drain, unique_name
from worker.aws.region import DEFAULT_REGION, region_from
from worker.cli import main
from worker.core.settings import load_settings
from worker.local.sandbox import LocalService
from worker.ops.enqueue import Enqueuer

ALL_SET = {
    "REGWORKER_AWS_REGION": "ap-south-1",
    "AWS_REGION": "eu-central-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
}
PROFILE_REGION = "ap-northeast-1"
# (explicit --region, variables set, the region picked), in the rule's order.
ORDER = [
    pytest.param("eu-north-1", ALL_SET, "eu-north-1", id="--region"),
    pytest.param(None, ALL_SET, "ap-south-1", id="REGWORKER_AWS_REGION"),
    pytest.param(None, {**ALL_SET, "REGWORKER_AWS_REGION": ""}, "eu-central-1", id="AWS_REGION"),
    pytest.param(None, {"AWS_DEFAULT_REGION": "eu-west-1"}, "eu-west-1", id="AWS_DEFAULT_REGION"),
    pytest.param(None, {}, PROFILE_REGION, id="profile"),
]


@pytest.fixture
def profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An AWS config file whose default profile has a region."""
    config = tmp_path / "config"
    config.write_text(f"[default]\nregion = {PROFILE_REGION}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))


@pytest.mark.usefixtures("profile")
@pytest.mark.parametrize(("explicit", "variables", "expected"), ORDER)
def test_the_rules_order(explicit: str | None, variables: dict[str, str], expected: str) -> None:
    assert region_from(variables, explicit) == expected


def test_without_any_region_it_is_us_east_1() -> None:
    """conftest points AWS_CONFIG_FILE at /dev/null and strips every AWS_* variable."""
    assert region_from(os.environ) == DEFAULT_REGION == "us-east-1"


@pytest.mark.usefixtures("profile")
@pytest.mark.parametrize(("explicit", "variables", "expected"), ORDER[1:])
def test_settings_give_the_same_answer(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    explicit: str | None,
    variables: dict[str, str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("REGWORKER_QUEUE_URL", "http://127.0.0.1:9/000000000000/q")
    monkeypatch.setenv("REGWORKER_DLQ_URL", "http://127.0.0.1:9/000000000000/dlq")
    for name, value in variables.items():
        if value:
            monkeypatch.setenv(name, value)
    assert load_settings().aws_region == region_from(os.environ) == expected


def test_one_variable_moves_the_worker_and_every_tool(
    moto: LocalService,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """With REGWORKER_AWS_REGION the only region set, `run`'s settings, `enqueue`,
    `provision` and `dlq`'s rule all pick it. moto keeps regions apart, so a queue made
    there takes a send only from a client in that region."""
    region = "ap-southeast-2"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("REGWORKER_AWS_REGION", region)

    name = unique_name("region")
    assert main(["provision", "--name", name, "--sink", "sns", "--json"]) == 0
    provisioned = json.loads(capsys.readouterr().out)
    assert provisioned["REGWORKER_TOPIC_ARN"].startswith(f"arn:aws:sns:{region}:")
    queue_url = provisioned["REGWORKER_QUEUE_URL"]

    assert main(["enqueue", "--queue-url", queue_url, "tok-region-1"]) == 0
    assert capsys.readouterr().out == "sent 1, failed 0\n"
    Enqueuer(queue_url).enqueue("tok-region-2")  # the web tier's, no region given
    sqs = boto3.client("sqs", region_name=region)
    assert len(drain(sqs, queue_url, 2)) == 2

    monkeypatch.setenv("REGWORKER_QUEUE_URL", queue_url)
    monkeypatch.setenv("REGWORKER_DLQ_URL", provisioned["REGWORKER_DLQ_URL"])
    monkeypatch.setenv("REGWORKER_SINK", "sns")
    monkeypatch.setenv("REGWORKER_TOPIC_ARN", provisioned["REGWORKER_TOPIC_ARN"])
    assert load_settings().aws_region == region
    # What `regworker dlq` will call for its region (its --region not given).
    assert region_from(os.environ, None) == region

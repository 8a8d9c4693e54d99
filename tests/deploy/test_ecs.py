"""deploy/ecs.yaml: the worker on ECS Fargate, checked by reading the template (cfn-lint
runs over it in test_deploy.py). Numbers the worker dictates (stop time, port, paths,
start-up time) are compared with the settings, not with copies of them."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import test_container
from tests.deploy.conftest import HealthServer
from tests.deploy.test_deploy import CloudFormationLoader
from tests.deploy.test_deploy import template as stack_template
from tests.deploy.worker_contract import (
    LIVENESS_PATH,
    default,
    http_port,
    seconds_to_stop,
)
from worker.core.settings import Settings, Sink, unknown_variables

ROOT = Path(__file__).resolve().parents[2]
ECS_TEMPLATE = ROOT / "deploy" / "ecs.yaml"
FARGATE_MAX_STOP_TIMEOUT = 120
REGION = "eu-west-1"
NO_VALUE = {"Ref": "AWS::NoValue"}
SAMPLE_PARAMETERS = {
    "QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/regworker",
    "DeadLetterQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/regworker-dlq",
    "TopicArn": "arn:aws:sns:us-east-1:123456789012:regworker-events",
    "IdempotencyTableName": "regworker-idempotency",
}


@cache
def ecs() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(ECS_TEMPLATE.read_text(), Loader=CloudFormationLoader)
    return loaded


def resource(name: str) -> dict[str, Any]:
    properties: dict[str, Any] = ecs()["Resources"][name]["Properties"]
    return properties


def container() -> dict[str, Any]:
    (only,) = resource("TaskDefinition")["ContainerDefinitions"]
    assert isinstance(only, dict)
    return only


def parameter_values(sink: Sink, table: bool) -> dict[str, str]:
    values = {
        name: str(spec["Default"])
        for name, spec in ecs()["Parameters"].items()
        if "Default" in spec
    }
    values.update(SAMPLE_PARAMETERS)
    values["AWS::Region"] = REGION
    values["Sink"] = sink.value
    if not table:
        values["IdempotencyTableName"] = ""
    return values


def conditions(values: Mapping[str, str]) -> dict[str, bool]:
    return {
        "UseEventBridge": values["Sink"] == "eventbridge",
        "UseSns": values["Sink"] == "sns",
        "WithIdempotencyTable": values["IdempotencyTableName"] != "",
    }


def resolve(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, dict) and set(node) == {"Ref"}:
        return values[node["Ref"]]
    return node


def environment(sink: Sink = Sink.EVENTBRIDGE, table: bool = False) -> dict[str, str]:
    """The container's environment for one set of parameters (Fn::If evaluated)."""
    values = parameter_values(sink, table)
    truth = conditions(values)
    env: dict[str, str] = {}
    for item in container()["Environment"]:
        if "Fn::If" in item:
            condition, then, otherwise = item["Fn::If"]
            item = then if truth[condition] else otherwise
        if item == NO_VALUE:
            continue
        env[item["Name"]] = str(resolve(item["Value"], values))
    return env


def test_template_has_the_sections_cloudformation_reads() -> None:
    known = {"AWSTemplateFormatVersion", "Description", "Metadata", "Parameters"}
    assert set(ecs()) <= known | {"Conditions", "Resources", "Outputs"}
    types = {name: spec["Type"] for name, spec in ecs()["Resources"].items()}
    assert types == {
        "LogGroup": "AWS::Logs::LogGroup",
        "ExecutionRole": "AWS::IAM::Role",
        "TaskRole": "AWS::IAM::Role",
        "TaskDefinition": "AWS::ECS::TaskDefinition",
        "Service": "AWS::ECS::Service",
        "ScalableTarget": "AWS::ApplicationAutoScaling::ScalableTarget",
        "BacklogPerTaskPolicy": "AWS::ApplicationAutoScaling::ScalingPolicy",
    }


def test_fargate_task_runs_the_image_as_its_non_root_user() -> None:
    task = resource("TaskDefinition")
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["NetworkMode"] == "awsvpc"
    assert container()["Image"] == {"Ref": "Image"}
    assert container()["Command"] == ["run"]
    assert container()["Essential"] is True
    assert container()["User"] == test_container.runtime().last("USER")
    assert container()["ReadonlyRootFilesystem"] is True
    assert container()["Privileged"] is False


def test_tmp_is_the_one_writable_place() -> None:
    volumes = {volume["Name"] for volume in resource("TaskDefinition")["Volumes"]}
    mounts = container()["MountPoints"]
    assert [(mount["ContainerPath"], mount["ReadOnly"]) for mount in mounts] == [("/tmp", False)]
    assert {mount["SourceVolume"] for mount in mounts} <= volumes


@pytest.mark.parametrize("sink", list(Sink))
def test_stop_timeout_outlasts_the_worker_shutdown(sink: Sink) -> None:
    """ECS sends SIGTERM, then SIGKILL after stopTimeout (30 s by default): too early, and
    started messages stay invisible and deletes are lost (duplicates later)."""
    stop_timeout = container()["StopTimeout"]
    assert isinstance(stop_timeout, int)
    assert stop_timeout >= seconds_to_stop(environment(sink)), "SIGKILL before a clean stop"
    assert stop_timeout <= FARGATE_MAX_STOP_TIMEOUT


def test_port_mapping_is_the_worker_http_port() -> None:
    ports = [mapping["ContainerPort"] for mapping in container()["PortMappings"]]
    assert ports == [http_port(environment())]


def health_check_code() -> str:
    command = container()["HealthCheck"]["Command"]
    assert command[:3] == ["CMD", "python", "-c"], "exec form, the image's python (no curl)"
    assert len(command) == 4
    code = command[3]
    assert isinstance(code, str)
    return code


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_health_check_asks_healthz(health_server: HealthServer, status: int, healthy: bool) -> None:
    """The check's own code, run against a stand-in answering 200 or 503 on /healthz."""
    url = f"http://127.0.0.1:{http_port(environment())}{LIVENESS_PATH}"
    code = health_check_code()
    assert url in code
    health_server.status = status
    local = code.replace(url, f"http://127.0.0.1:{health_server.port}{LIVENESS_PATH}")
    done = subprocess.run(
        [sys.executable, "-c", local], capture_output=True, timeout=30, check=False
    )
    assert (done.returncode == 0) is healthy, done.stderr


def test_health_check_waits_out_the_startup_check() -> None:
    check = container()["HealthCheck"]
    assert check["StartPeriod"] >= float(str(default("startup_check_seconds")))
    assert check["Timeout"] < check["Interval"]
    assert 1 <= check["Retries"] <= 10


def test_task_role_carries_the_worker_policy_only() -> None:
    assert resource("TaskRole")["ManagedPolicyArns"] == [{"Ref": "WorkerPolicyArn"}]
    assert "Policies" not in resource("TaskRole")
    execution = resource("ExecutionRole")["ManagedPolicyArns"]
    assert len(execution) == 1
    assert execution[0]["Fn::Sub"].endswith(
        ":iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    )
    for role in ("TaskRole", "ExecutionRole"):
        (statement,) = resource(role)["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert statement["Condition"]["StringEquals"] == {
            "aws:SourceAccount": {"Ref": "AWS::AccountId"}
        }
    task = resource("TaskDefinition")
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert task["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}


def test_logs_go_to_a_group_with_retention() -> None:
    assert isinstance(resource("LogGroup")["RetentionInDays"], dict)  # a parameter
    assert ecs()["Parameters"]["LogRetentionDays"]["Default"] > 0
    logging = container()["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    assert logging["Options"]["awslogs-group"] == {"Ref": "LogGroup"}
    assert logging["Options"]["awslogs-region"] == {"Ref": "AWS::Region"}
    assert logging["Options"]["awslogs-stream-prefix"]


@pytest.mark.parametrize(("sink", "table"), [(Sink.EVENTBRIDGE, False), (Sink.SNS, True)])
def test_environment_loads_as_settings(
    monkeypatch: pytest.MonkeyPatch, sink: Sink, table: bool
) -> None:
    env = environment(sink, table)
    assert unknown_variables(env) == []
    assert env["AWS_REGION"] == REGION
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.sink is sink
    assert settings.queue_url == SAMPLE_PARAMETERS["QueueUrl"]
    assert settings.aws_region == REGION
    assert bool(settings.idempotency_table) is table
    assert env["REGWORKER_LOG_FORMAT"] == "json"


def test_parameters_name_the_outputs_of_the_regworker_stack() -> None:
    """Each setting passed through is a parameter that names the cloudformation.yaml
    output (by its variable, the output's Description) it is filled from."""
    outputs = {
        spec["Description"]: name
        for name, spec in stack_template()["Outputs"].items()
        if spec["Description"].startswith("REGWORKER_")
    }
    passed = 0
    for item in container()["Environment"]:
        item = item["Fn::If"][1] if "Fn::If" in item else item
        if item["Name"] in outputs and isinstance(item["Value"], dict):
            parameter = ecs()["Parameters"][item["Value"]["Ref"]]
            assert parameter["Description"].startswith(item["Name"]), item["Name"]
            assert outputs[item["Name"]] in parameter["Description"], item["Name"]
            passed += 1
    assert passed == len(outputs)
    assert "WorkerPolicyArn" in stack_template()["Outputs"]
    assert "WorkerPolicyArn" in ecs()["Parameters"]


def test_service_deploys_without_losing_capacity() -> None:
    service = resource("Service")
    assert service["LaunchType"] == "FARGATE"
    config = service["DeploymentConfiguration"]
    assert config["MinimumHealthyPercent"] == 100
    assert config["MaximumPercent"] == 200
    assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    # The scalable target owns the count; a DesiredCount would reset it on each update.
    assert "DesiredCount" not in service
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["Subnets"] == {"Ref": "Subnets"}
    assert network["SecurityGroups"] == {"Ref": "SecurityGroups"}


def test_scalable_target_is_the_service_desired_count() -> None:
    target = resource("ScalableTarget")
    assert target["ServiceNamespace"] == "ecs"
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    assert target["ResourceId"] == {"Fn::Sub": "service/${ClusterName}/${Service.Name}"}
    assert target["MinCapacity"] == {"Ref": "MinTasks"}
    assert target["MaxCapacity"] == {"Ref": "MaxTasks"}
    # With no task running, backlog per task would divide by zero.
    assert ecs()["Parameters"]["MinTasks"]["MinValue"] >= 1


def metric_queries() -> dict[str, dict[str, Any]]:
    policy = resource("BacklogPerTaskPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["ScalingTargetId"] == {"Ref": "ScalableTarget"}
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == {"Ref": "BacklogPerTaskTarget"}
    return {query["Id"]: query for query in config["CustomizedMetricSpecification"]["Metrics"]}


def test_scaling_policy_tracks_backlog_per_task() -> None:
    """The metric math AWS documents for SQS: visible messages / running tasks."""
    queries = metric_queries()
    assert [query_id for query_id, query in queries.items() if query["ReturnData"]] == ["e1"]
    assert queries["e1"]["Expression"].replace(" ", "") == "m1/m2"
    backlog = queries["m1"]["MetricStat"]
    assert backlog["Stat"] == "Sum"
    assert backlog["Metric"]["Namespace"] == "AWS/SQS"
    assert backlog["Metric"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    tasks = queries["m2"]["MetricStat"]
    assert tasks["Metric"]["Namespace"] == "ECS/ContainerInsights"
    assert tasks["Metric"]["MetricName"] == "RunningTaskCount"
    assert tasks["Metric"]["Dimensions"] == [
        {"Name": "ClusterName", "Value": {"Ref": "ClusterName"}},
        {"Name": "ServiceName", "Value": {"Fn::GetAtt": ["Service", "Name"]}},
    ]


@pytest.mark.parametrize("name", ["regworker", "regworker.fifo", "my_app-1"])
def test_backlog_is_read_from_the_queue_the_worker_consumes(name: str) -> None:
    """QueueName is cut from QueueUrl (Fn::Select 4 of Fn::Split "/"), so the two
    cannot disagree: evaluated here on the URLs SQS hands out."""
    url = f"https://sqs.eu-west-1.amazonaws.com/123456789012/{name}"
    assert re.fullmatch(ecs()["Parameters"]["QueueUrl"]["AllowedPattern"], url)
    (dimension,) = metric_queries()["m1"]["MetricStat"]["Metric"]["Dimensions"]
    assert dimension["Name"] == "QueueName"
    index, split = dimension["Value"]["Fn::Select"]
    separator, source = split["Fn::Split"]
    assert source == {"Ref": "QueueUrl"}
    assert url.split(separator)[index] == name

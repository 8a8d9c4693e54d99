"""deploy/cloudformation.yaml: well-formed, the same resources as `regworker provision`,
IAM policies granting exactly the calls the code makes, on exactly its resources, and
queue and topic policies that refuse requests without TLS. cfn-lint runs over every
template in deploy/ (deploy/ecs.yaml has its own tests in test_ecs.py).

The calls are found by reading the source (an AST walk), not by a list kept by hand:
a new client call in the worker without its action in WorkerPolicy fails here.
"""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import boto3
import botocore.session
import pytest
import yaml
from botocore import xform_name
from botocore.exceptions import ClientError

from tests.support import REGION as LOCAL_REGION
from tests.support import drain, unique_name
from worker.aws.sqs_wire import queue_arn
from worker.cli import main
from worker.core.settings import Sink
from worker.ops.provision import (
    DEFAULT_EVENT_SOURCE,
    DEFAULT_MAX_RECEIVES,
    DEFAULT_NAME,
    DLQ_RETENTION_SECONDS,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_TTL_ATTRIBUTE,
    NAME_PATTERN,
    QUEUE_RETENTION_SECONDS,
    QUEUE_VISIBILITY_SECONDS,
    REDRIVE_MARGIN,
    ResourceNames,
    Resources,
    create_queues,
    deny_without_tls,
    rule_pattern,
)

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "worker"
TEMPLATE_PATH = ROOT / "deploy" / "cloudformation.yaml"
REGION, ACCOUNT = "us-east-1", "123456789012"

# --- reading the template --------------------------------------------------------------

SHORT_TAGS: Final = frozenset(
    {
        "Ref",
        "Condition",
        "GetAtt",
        "Sub",
        "If",
        "Equals",
        "Not",
        "And",
        "Or",
        "FindInMap",
        "Join",
        "Select",
        "Split",
        "Base64",
        "Cidr",
        "GetAZs",
        "ImportValue",
    }
)
PSEUDO_PARAMETERS: Final = frozenset(
    {
        "AWS::AccountId",
        "AWS::NoValue",
        "AWS::NotificationARNs",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)


class CloudFormationLoader(yaml.SafeLoader):
    """A safe loader that reads CloudFormation's short tags as their long form:
    ``!Ref X`` as ``{"Ref": "X"}``, ``!GetAtt A.B`` as ``{"Fn::GetAtt": ["A", "B"]}``."""


def _construct_short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if suffix not in SHORT_TAGS:
        raise yaml.constructor.ConstructorError(
            None, None, f"unknown tag !{suffix}", node.start_mark
        )
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in {"Ref", "Condition"}:
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_short_tag)


@cache
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(  # a SafeLoader subclass
        TEMPLATE_PATH.read_text(), Loader=CloudFormationLoader
    )
    return loaded


def walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from walk(child)


# --- evaluating it for one set of parameters ----------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A reference to a resource: !Ref (attribute None) or !GetAtt."""

    target: str
    attribute: str | None = None


class _NoValue:
    pass


NO_VALUE: Final = _NoValue()
PSEUDO_VALUES: Final = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}


class Stack:
    """The template as CloudFormation would see it for these parameter values."""

    def __init__(self, **parameters: str) -> None:
        self.template = template()
        declared = self.template["Parameters"]
        unknown = set(parameters) - set(declared)
        assert not unknown, f"not parameters of the template: {unknown}"
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in declared.items()
        } | parameters
        self.conditions = {
            name: self.truth(expression) for name, expression in self.template["Conditions"].items()
        }

    def truth(self, expression: Any) -> bool:
        ((function, argument),) = expression.items()
        if function == "Condition":
            return self.truth(self.template["Conditions"][argument])
        if function == "Fn::Equals":
            return bool(self.resolve(argument[0]) == self.resolve(argument[1]))
        if function == "Fn::Not":
            return not self.truth(argument[0])
        if function == "Fn::And":
            return all(self.truth(part) for part in argument)
        if function == "Fn::Or":
            return any(self.truth(part) for part in argument)
        raise AssertionError(f"not a condition function: {function}")

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [item for item in map(self.resolve, node) if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def _function(self, function: str, argument: Any) -> Any:
        if function == "Ref":
            if argument == "AWS::NoValue":
                return NO_VALUE
            if argument in PSEUDO_VALUES:
                return PSEUDO_VALUES[argument]
            if argument in self.parameters:
                return self.parameters[argument]
            return Ref(argument)
        if function == "Fn::GetAtt":
            return Ref(argument[0], argument[1])
        if function == "Fn::If":
            name, when_true, when_false = argument
            return self.resolve(when_true if self.conditions[name] else when_false)
        if function == "Fn::Sub":
            values = {**PSEUDO_VALUES, **self.parameters}
            return re.sub(r"\$\{([^!}][^}]*)\}", lambda m: values[m.group(1)], argument)
        if function == "Fn::FindInMap":
            table, first, second = (self.resolve(part) for part in argument)
            return self.template["Mappings"][table][first][second]
        raise AssertionError(f"the test does not evaluate {function}")

    def resources(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"Type": spec["Type"], **self.resolve(spec.get("Properties", {}))}
            for name, spec in self.template["Resources"].items()
            if self.conditions.get(spec.get("Condition", ""), True)
        }

    def outputs(self) -> dict[str, tuple[str, Any]]:
        """Description and value of each output this stack would have."""
        return {
            name: (spec["Description"], self.resolve(spec["Value"]))
            for name, spec in self.template["Outputs"].items()
            if self.conditions.get(spec.get("Condition", ""), True)
        }


def stack_for(sink: Sink, table: bool = False, fifo: bool = False, **more: str) -> Stack:
    return Stack(
        Sink=sink.value,
        EnableIdempotencyTable=str(table).lower(),
        Fifo=str(fifo).lower(),
        **more,
    )


CONFIGURATIONS = [
    pytest.param(sink, table, id=f"{sink.value}{'-table' if table else ''}")
    for sink, table in itertools.product(Sink, [False, True])
]

# --- what the code calls ----------------------------------------------------------------

# Every client operation the code may call, and the IAM action that authorizes it. Batch
# calls are authorized as their single action. An operation missing here fails the test.
IAM_ACTIONS: Final = {
    "receive_message": "sqs:ReceiveMessage",
    "delete_message": "sqs:DeleteMessage",
    "delete_message_batch": "sqs:DeleteMessage",
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "change_message_visibility_batch": "sqs:ChangeMessageVisibility",
    "get_queue_attributes": "sqs:GetQueueAttributes",
    "send_message": "sqs:SendMessage",
    "send_message_batch": "sqs:SendMessage",
    "start_message_move_task": "sqs:StartMessageMoveTask",
    "list_message_move_tasks": "sqs:ListMessageMoveTasks",
    "cancel_message_move_task": "sqs:CancelMessageMoveTask",
    "put_events": "events:PutEvents",
    "publish": "sns:Publish",
    "publish_batch": "sns:Publish",
    "get_topic_attributes": "sns:GetTopicAttributes",
    "describe_event_bus": "events:DescribeEventBus",
    "resolve_customer": "aws-marketplace:ResolveCustomer",
    "get_item": "dynamodb:GetItem",
    "put_item": "dynamodb:PutItem",
    "update_item": "dynamodb:UpdateItem",
    "delete_item": "dynamodb:DeleteItem",
}
SERVICES: Final = ("sqs", "sns", "events", "meteringmarketplace", "dynamodb")
# What the worker's AWS clients are called in the code: `self._client`, `clients.sqs`, ...
CLIENT_RECEIVER: Final = re.compile(r"_?(?:\w+_)?(?:client|sqs|sns|events|metering|dynamodb)")
# The worker's runtime modules named in the design; the import closure of `regworker run`
# (worker/core/service.py) is added to them, so a new module is scanned without a change here.
RUNTIME_MODULES: Final = (
    "worker.core.service",
    "worker.aws.sqs",
    "worker.core.dead_letter",
    "worker.core.publisher",
    "worker.core.resolver",
    "worker.core.consumer",
    "worker.core.handler",
    "worker.core.idempotency",
)


def module_path(module: str) -> Path:
    """The source file of a dotted ``worker.*`` module name."""
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@cache
def operation_names() -> frozenset[str]:
    session = botocore.session.get_session()
    return frozenset(
        xform_name(operation)
        for service in SERVICES
        for operation in session.get_service_model(service).operation_names
    )


def client_calls(source: str) -> set[str]:
    """Names of AWS operations called on a client-like receiver in this source."""
    calls = set()
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = node.func.value
        name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
        if node.func.attr in operation_names() and CLIENT_RECEIVER.fullmatch(name):
            calls.add(node.func.attr)
    return calls


def imported_worker_modules(module: str) -> set[str]:
    tree = ast.parse(module_path(module).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("worker."):
            found.add(str(node.module))
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("worker."))
    return {name for name in found if module_path(name).exists()}


def runtime_modules() -> set[str]:
    pending = [name for name in RUNTIME_MODULES if module_path(name).exists()]
    modules: set[str] = set()
    while pending:
        module = pending.pop()
        if module not in modules:
            modules.add(module)
            pending.extend(imported_worker_modules(module))
    return modules


def actions_called(modules: set[str]) -> set[str]:
    calls = set().union(*(client_calls(module_path(m).read_text()) for m in modules))
    unmapped = calls - set(IAM_ACTIONS)
    assert not unmapped, f"add these operations to IAM_ACTIONS (and the policy): {unmapped}"
    return {IAM_ACTIONS[call] for call in calls}


def granted(policy: dict[str, Any]) -> dict[str, set[str]]:
    """Action -> the resources (logical ids, or "*") it is allowed on."""
    grants: dict[str, set[str]] = {}
    for statement in policy["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in [actions] if isinstance(actions, str) else actions:
            for resource in [resources] if not isinstance(resources, list) else resources:
                target = resource.target if isinstance(resource, Ref) else resource
                grants.setdefault(action, set()).add(target)
    return grants


# --- tests --------------------------------------------------------------------------------


def test_template_has_the_sections_cloudformation_reads() -> None:
    known = {
        "AWSTemplateFormatVersion",
        "Description",
        "Metadata",
        "Parameters",
        "Mappings",
        "Conditions",
        "Resources",
        "Outputs",
    }
    assert set(template()) <= known
    assert template()["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template()["Resources"]
    for name, spec in template()["Resources"].items():
        assert re.fullmatch(r"[A-Za-z0-9]+", name), name
        assert spec["Type"].startswith("AWS::"), name


def test_every_reference_has_a_target() -> None:
    parameters = set(template()["Parameters"])
    resources = set(template()["Resources"])
    conditions = set(template()["Conditions"])
    mappings = set(template()["Mappings"])
    for node in walk(template()):
        if not isinstance(node, dict):
            continue
        if "Ref" in node:
            assert node["Ref"] in parameters | resources | PSEUDO_PARAMETERS, node
        if "Fn::GetAtt" in node:
            assert node["Fn::GetAtt"][0] in resources, node
        if "Fn::Sub" in node:
            for variable in re.findall(r"\$\{([^!}][^}]*)\}", node["Fn::Sub"]):
                head = variable.split(".")[0]
                assert head in parameters | resources | PSEUDO_PARAMETERS, variable
        if "Fn::If" in node:
            assert node["Fn::If"][0] in conditions, node
        if isinstance(node.get("Condition"), str):
            assert node["Condition"] in conditions, node
        if "Fn::FindInMap" in node:
            assert node["Fn::FindInMap"][0] in mappings, node


def test_loader_reads_short_tags() -> None:
    text = "a: !Ref X\nb: !GetAtt Q.Arn\nc: !If [C, !Sub '${X}-y', !Ref AWS::NoValue]\n"
    assert yaml.load(text, Loader=CloudFormationLoader) == {
        "a": {"Ref": "X"},
        "b": {"Fn::GetAtt": ["Q", "Arn"]},
        "c": {"Fn::If": ["C", {"Fn::Sub": "${X}-y"}, {"Ref": "AWS::NoValue"}]},
    }
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.load("a: !Bogus X\n", Loader=CloudFormationLoader)


def cloudformation_templates() -> list[Path]:
    """Every CloudFormation template in deploy/ (a YAML file that says it is one)."""
    return sorted(
        path
        for path in (ROOT / "deploy").glob("*.yaml")
        if "AWSTemplateFormatVersion" in path.read_text()
    )


def test_every_template_is_found() -> None:
    names = {path.name for path in cloudformation_templates()}
    assert {TEMPLATE_PATH.name, "ecs.yaml"} <= names


@pytest.mark.parametrize("path", cloudformation_templates(), ids=lambda path: path.name)
def test_cfn_lint_finds_nothing(path: Path) -> None:
    pytest.importorskip("cfnlint")
    lint = "import sys\nfrom cfnlint.runner import main\nsys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", lint, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_parameters_agree_with_provision() -> None:
    parameters = template()["Parameters"]
    assert parameters["Name"]["AllowedPattern"] == NAME_PATTERN.pattern
    assert parameters["Name"]["Default"] == DEFAULT_NAME
    assert parameters["Sink"]["AllowedValues"] == [sink.value for sink in Sink]
    assert parameters["EventSource"]["Default"] == DEFAULT_EVENT_SOURCE
    assert parameters["MaxReceives"]["Default"] == str(DEFAULT_MAX_RECEIVES)


def test_redrive_count_is_max_receives_plus_the_margin() -> None:
    allowed = template()["Parameters"]["MaxReceives"]["AllowedValues"]
    mapping = template()["Mappings"]["RedriveMaxReceiveCount"]
    assert sorted(mapping, key=int) == allowed
    for value in allowed:
        redrive = stack_for(Sink.EVENTBRIDGE, MaxReceives=value).resources()["Queue"]
        assert redrive["RedrivePolicy"] == {
            "deadLetterTargetArn": Ref("DeadLetterQueue", "Arn"),
            "maxReceiveCount": int(value) + REDRIVE_MARGIN,
        }


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_queues_match_provision(fifo: bool) -> None:
    names = ResourceNames("orders", fifo)
    resources = stack_for(Sink.SNS, fifo=fifo, Name="orders").resources()
    queue, dlq = resources["Queue"], resources["DeadLetterQueue"]
    assert (queue["QueueName"], dlq["QueueName"]) == (names.queue, names.dlq)
    assert queue["VisibilityTimeout"] == QUEUE_VISIBILITY_SECONDS
    assert queue["MessageRetentionPeriod"] == QUEUE_RETENTION_SECONDS
    assert dlq["MessageRetentionPeriod"] == DLQ_RETENTION_SECONDS
    assert dlq["RedriveAllowPolicy"] == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [f"arn:aws:sqs:{REGION}:{ACCOUNT}:{names.queue}"],
    }
    fifo_flags = {"FifoQueue": True} if fifo else {}
    assert {k: v for k, v in dlq.items() if k == "FifoQueue"} == fifo_flags
    assert queue.get("ContentBasedDeduplication", False) is fifo
    assert resources["Topic"]["TopicName"] == names.topic
    assert resources["Topic"].get("FifoTopic", False) is fifo


def test_eventbridge_sink_matches_provision() -> None:
    names = ResourceNames("orders")
    resources = stack_for(Sink.EVENTBRIDGE, Name="orders", EventSource="shop.x").resources()
    assert "Topic" not in resources
    assert resources["EventBus"]["Name"] == names.bus
    rule = resources["CustomerRegisteredRule"]
    assert rule["Name"] == names.rule
    assert rule["EventBusName"] == Ref("EventBus")
    assert rule["EventPattern"] == rule_pattern("shop.x")


def test_idempotency_table_matches_provision() -> None:
    assert "IdempotencyTable" not in stack_for(Sink.SNS).resources()
    table = stack_for(Sink.SNS, table=True, Name="orders").resources()["IdempotencyTable"]
    assert table["TableName"] == ResourceNames("orders").table
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": IDEMPOTENCY_KEY, "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [
        {"AttributeName": IDEMPOTENCY_KEY, "AttributeType": "S"}
    ]
    assert table["TimeToLiveSpecification"] == {
        "AttributeName": IDEMPOTENCY_TTL_ATTRIBUTE,
        "Enabled": True,
    }


@pytest.mark.parametrize(("sink", "table"), CONFIGURATIONS)
def test_outputs_are_the_settings_provision_prints(sink: Sink, table: bool) -> None:
    outputs = stack_for(sink, table).outputs()
    settings = {
        description: value
        for description, value in outputs.values()
        if description.startswith("REGWORKER_")
    }
    provisioned = Resources("q", "d", sink, idempotency_table="t" if table else "")
    assert list(settings) == list(provisioned.settings_env())
    assert settings["REGWORKER_QUEUE_URL"] == Ref("Queue")  # Ref of a queue is its URL
    assert settings["REGWORKER_DLQ_URL"] == Ref("DeadLetterQueue")
    assert settings["REGWORKER_SINK"] == sink.value
    assert settings.get("REGWORKER_EVENT_BUS_NAME", Ref("EventBus")) == Ref("EventBus")
    assert settings.get("REGWORKER_TOPIC_ARN", Ref("Topic")) == Ref("Topic")
    assert settings.get("REGWORKER_IDEMPOTENCY_TABLE", Ref("IdempotencyTable")) == Ref(
        "IdempotencyTable"
    )
    assert outputs["WorkerPolicyArn"][1] == Ref("WorkerPolicy")


def test_scanner_finds_client_calls_only() -> None:
    source = (
        "async def f(self, clients):\n"
        "    await self._client.put_events(Entries=[])\n"
        "    await clients.sqs.delete_message_batch(QueueUrl='', Entries=[])\n"
        "    await self._publisher.publish(event)\n"  # not a client: the worker's own class
        "    await self._client.close()\n"  # not an AWS operation
    )
    assert client_calls(source) == {"put_events", "delete_message_batch"}


def test_runtime_modules_include_the_designed_ones() -> None:
    modules = runtime_modules()
    designed = {"service", "dead_letter", "publisher", "resolver", "handler"}
    assert {f"worker.core.{name}" for name in designed} | {"worker.aws.sqs"} <= modules
    assert not any(
        name.startswith(("worker.ops", "worker.local", "worker.cli")) for name in modules
    )


@pytest.mark.parametrize(("sink", "table"), CONFIGURATIONS)
def test_worker_policy_grants_exactly_what_the_worker_calls(sink: Sink, table: bool) -> None:
    called = actions_called(runtime_modules())
    unused = {Sink.SNS: "events:", Sink.EVENTBRIDGE: "sns:"}[sink]
    expected = {
        action
        for action in called
        if not action.startswith(unused) and (table or not action.startswith("dynamodb:"))
    }
    grants = granted(stack_for(sink, table).resources()["WorkerPolicy"])
    assert set(grants) == expected, (
        f"missing {expected - set(grants)}, never called {set(grants) - expected}"
    )


@pytest.mark.parametrize(("sink", "table"), CONFIGURATIONS)
def test_worker_policy_grants_each_action_on_its_own_resource(sink: Sink, table: bool) -> None:
    where = {
        "sqs:ReceiveMessage": {"Queue"},
        "sqs:DeleteMessage": {"Queue"},
        "sqs:ChangeMessageVisibility": {"Queue"},
        # Both queues: the depth of the source, the start-up and recovery probes of both.
        "sqs:GetQueueAttributes": {"Queue", "DeadLetterQueue"},
        "sqs:SendMessage": {"DeadLetterQueue"},
        "events:PutEvents": {"EventBus"},
        "events:DescribeEventBus": {"EventBus"},
        "sns:Publish": {"Topic"},
        "sns:GetTopicAttributes": {"Topic"},
        "aws-marketplace:ResolveCustomer": {"*"},
    }
    grants = granted(stack_for(sink, table).resources()["WorkerPolicy"])
    for action, resources in grants.items():
        expected = {"IdempotencyTable"} if action.startswith("dynamodb:") else where[action]
        assert resources == expected, action
        # ResolveCustomer has no resource ARNs; every other grant names its resource.
        assert "*" not in resources or action == "aws-marketplace:ResolveCustomer"


# What `regworker dlq` prints for operators to run themselves, e.g. "aws sqs
# cancel-message-move-task": the policy must let them, on the queue it is about.
OPERATOR_COMMAND: Final = re.compile(r"\baws sqs ([a-z]+(?:-[a-z]+)+)")


def dlq_modules() -> set[str]:
    """The DLQ tool's modules: its command line (``worker.cli.dlq*``), its ops code
    (``worker.ops.dlq``, a module or a package) and the AWS-layer modules they import
    (the SQS wire helpers make some of its calls)."""
    root = WORKER / "ops" / "dlq"
    if root.is_dir():
        modules = {f"worker.ops.dlq.{path.stem}" for path in root.glob("*.py")}
    else:
        modules = {"worker.ops.dlq"}
    modules |= {f"worker.cli.{path.stem}" for path in (WORKER / "cli").glob("dlq*.py")}
    return modules | aws_imports(modules)


def aws_imports(modules: set[str]) -> set[str]:
    """The ``worker.aws`` modules that these modules import."""
    imported = set()
    for module in modules:
        for node in ast.walk(ast.parse(module_path(module).read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("worker.aws"):
                imported.add(str(node.module))
    return imported


def dlq_sources() -> list[Path]:
    return [module_path(module) for module in dlq_modules()]


def operator_commands() -> set[str]:
    """IAM actions of the `aws sqs ...` commands the DLQ tool tells operators to run."""
    found = {
        command.replace("-", "_")
        for path in dlq_sources()
        for command in OPERATOR_COMMAND.findall(path.read_text())
    }
    unmapped = found - set(IAM_ACTIONS)
    assert not unmapped, f"add these operations to IAM_ACTIONS (and the policy): {unmapped}"
    return {IAM_ACTIONS[command] for command in found}


def test_operator_commands_are_found() -> None:
    assert "sqs:CancelMessageMoveTask" in operator_commands()


def test_operator_policy_grants_exactly_what_regworker_dlq_calls() -> None:
    expected = actions_called(dlq_modules()) | operator_commands()
    grants = granted(stack_for(Sink.EVENTBRIDGE).resources()["OperatorPolicy"])
    assert set(grants) == expected, (
        f"missing {expected - set(grants)}, never used {set(grants) - expected}"
    )
    for action, resources in grants.items():
        assert "*" not in resources, action


class CallTrace:
    """Every SQS call a client makes, as (IAM action, the queue it is authorized on):
    the queue of QueueUrl, or the source queue of a move task."""

    def __init__(self, queues: dict[str, str]) -> None:
        self.queues = queues  # URL or ARN -> logical id in the template
        self.calls: set[tuple[str, str]] = set()

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        action = IAM_ACTIONS[xform_name(model.name)]
        where = self.queues[str(params.get("QueueUrl") or params.get("SourceArn"))]
        self.calls.add((action, where))
        if model.name == "StartMessageMoveTask":
            # The task moves with the caller's rights: it receives and deletes on the
            # source and sends to the destination (the message's own source if none).
            destination = self.queues.get(params.get("DestinationArn", ""), "Queue")
            self.calls |= {
                ("sqs:ReceiveMessage", where),
                ("sqs:DeleteMessage", where),
                ("sqs:SendMessage", destination),
            }

    def on(self, action: str) -> set[str]:
        return {queue for called, queue in self.calls if called == action}


def test_operator_policy_grants_each_action_only_on_the_queue_it_is_used_on(
    session: boto3.Session, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every `regworker dlq` command run against moto with a DLQ holding a message; each
    SQS call is recorded with its queue. Peek, stats and replay read and delete on the
    DLQ only, replay and redrive send to the queue only: the policy grants that and
    no more (finding: it granted receive/delete on the live queue, send on the DLQ)."""
    from worker.cli import dlq
    from worker.ops.dlq.redrive import MoveTask, move_task_status
    from worker.ops.dlq.target import Target, sqs_client

    sqs = session.client("sqs")
    queue_url, dlq_url = create_queues(sqs, unique_name("op"), max_receives=3)
    trace = CallTrace(
        {
            url_or_arn: logical_id
            for url, logical_id in [(queue_url, "Queue"), (dlq_url, "DeadLetterQueue")]
            for url_or_arn in (url, queue_arn(sqs, url))
        }
    )
    real_client = sqs_client

    def traced_client(target: Target) -> Any:
        client = real_client(target)
        client.meta.events.register("before-parameter-build.sqs", trace.record)
        return client

    monkeypatch.setattr(dlq, "sqs_client", traced_client)
    monkeypatch.setenv("REGWORKER_DLQ_URL", dlq_url)
    monkeypatch.setenv("REGWORKER_QUEUE_URL", queue_url)
    sqs.send_message(QueueUrl=dlq_url, MessageBody='{"registration_token": "t"}')
    for command in (["stats"], ["peek"], ["replay", "--dry-run"], ["replay"], ["redrive"]):
        main(["dlq", *command])  # redrive: moto has no move tasks, but the calls are made
    with pytest.raises(ClientError):  # what `redrive --wait` polls; moto refuses it
        move_task_status(
            traced_client(Target(dlq_url, LOCAL_REGION)),
            MoveTask("handle", queue_arn(sqs, dlq_url)),
        )
    capsys.readouterr()
    assert drain(sqs, queue_url), "replay sent the message to the queue"
    assert not drain(sqs, dlq_url), "and deleted it from the DLQ"

    # Told to operators, not called: a move task's handle names its source, the DLQ.
    trace.calls.add(("sqs:CancelMessageMoveTask", "DeadLetterQueue"))
    grants = granted(stack_for(Sink.EVENTBRIDGE).resources()["OperatorPolicy"])
    assert {action for action, _ in trace.calls} == set(grants)
    for action, resources in grants.items():
        assert resources == trace.on(action), action
    assert grants["sqs:SendMessage"] == {"Queue"}
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
        assert grants[action] == {"DeadLetterQueue"}, action


# --- encryption in transit and at rest -----------------------------------------------------

TLS_ONLY: Final = {"Bool": {"aws:SecureTransport": "false"}}
# The actions a topic policy can name (it takes no "sns:*"); the deny must cover them all.
TOPIC_ACTIONS: Final = frozenset(
    {
        "sns:Publish",
        "sns:Subscribe",
        "sns:GetTopicAttributes",
        "sns:SetTopicAttributes",
        "sns:ListSubscriptionsByTopic",
        "sns:AddPermission",
        "sns:RemovePermission",
        "sns:DeleteTopic",
    }
)
FULL_CONFIGURATIONS = [
    pytest.param(sink, fifo, id=f"{sink.value}{'-fifo' if fifo else ''}")
    for sink, fifo in itertools.product(Sink, [False, True])
]


def resource_policies(resources: dict[str, dict[str, Any]], target: str) -> list[dict[str, Any]]:
    """The queue or topic policies attached to the resource ``target``."""
    kinds = {"AWS::SQS::QueuePolicy": "Queues", "AWS::SNS::TopicPolicy": "Topics"}
    return [
        spec["PolicyDocument"]
        for spec in resources.values()
        if spec["Type"] in kinds and Ref(target) in spec[kinds[spec["Type"]]]
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize(("sink", "fifo"), FULL_CONFIGURATIONS)
def test_queues_and_topic_deny_requests_without_tls(sink: Sink, fifo: bool) -> None:
    resources = stack_for(sink, fifo=fifo).resources()
    targets = {"Queue": ["sqs:*"], "DeadLetterQueue": ["sqs:*"]}
    if sink is Sink.SNS:
        targets["Topic"] = sorted(TOPIC_ACTIONS)
    elif "EventBusPolicy" in {spec["Type"].rsplit("::", 1)[-1] for spec in resources.values()}:
        raise AssertionError("the bus has a policy: it must deny requests without TLS too")
    for target, actions in targets.items():
        policies = resource_policies(resources, target)
        assert len(policies) == 1, f"{target}: {len(policies)} resource policies"
        statements = policies[0]["Statement"]
        # They only refuse: access stays with the IAM policies.
        assert all(statement["Effect"] == "Deny" for statement in statements), target
        arn = Ref(target) if target == "Topic" else Ref(target, "Arn")
        assert any(
            statement["Principal"] in ("*", {"AWS": "*"})
            and statement["Condition"] == TLS_ONLY
            and sorted(as_list(statement["Action"])) == actions
            and as_list(statement["Resource"]) == [arn]
            for statement in statements
        ), f"{target}: no Deny on aws:SecureTransport false"


def test_the_denial_is_the_one_provision_writes() -> None:
    """`regworker provision` puts the same statement in the one policy it writes (the
    tap queue's): one definition of "TLS only" for both."""
    resources = stack_for(Sink.SNS).resources()
    for target in ("Queue", "DeadLetterQueue"):
        (policy,) = resource_policies(resources, target)
        assert policy["Statement"] == [{**deny_without_tls("arn"), "Resource": Ref(target, "Arn")}]
    (policy,) = resource_policies(resources, "Topic")
    (statement,) = policy["Statement"]
    assert statement == {**deny_without_tls("arn", statement["Action"]), "Resource": Ref("Topic")}


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
def test_topic_is_encrypted_at_rest(fifo: bool) -> None:
    topic = stack_for(Sink.SNS, fifo=fifo).resources()["Topic"]
    # The AWS managed key: its key policy lets this account use it through SNS, so the
    # worker's policy needs no KMS grant (test_worker_policy_grants_exactly_...).
    assert topic["KmsMasterKeyId"] == "alias/aws/sns"

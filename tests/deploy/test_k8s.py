"""deploy/k8s: the worker on Kubernetes with KEDA. Built-in kinds are validated offline
against kubernetes-validate's bundled schemas (strict: unknown fields fail), KEDA's
against its CRD schemas vendored in tests/deploy/schemas; then what the worker needs of
them (stop time, probes, port, identity, settings) is checked against the settings."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Final

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_container import runtime as dockerfile_runtime
from tests.deploy.worker_contract import (
    LIVENESS_PATH,
    METRICS_PATH,
    READINESS_PATH,
    default,
    http_port,
    seconds_to_stop,
)
from worker.core.settings import Settings, unknown_variables

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES_VERSION: Final = "1.30"
KEDA_SCHEMAS: Final = {
    "ScaledObject": "keda.sh_scaledobjects.v1alpha1.json",
    "TriggerAuthentication": "keda.sh_triggerauthentications.v1alpha1.json",
}
CUSTOM_GROUPS: Final = ("keda.sh/", "monitoring.coreos.com/", "kustomize.config.k8s.io/")
PLACEHOLDER: Final = re.compile(r"REPLACE_ME\w*")
IRSA_ANNOTATION: Final = "eks.amazonaws.com/role-arn"


@cache
def documents() -> dict[str, dict[str, Any]]:
    """Every object in deploy/k8s by kind (one object of each kind)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in found, f"two {document['kind']}"
            found[document["kind"]] = document | {"__file__": path.name}
    return found


def manifest(kind: str) -> dict[str, Any]:
    return {key: value for key, value in documents()[kind].items() if key != "__file__"}


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = manifest("Deployment")["spec"]["template"]["spec"]
    return spec


def worker_container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    assert isinstance(only, dict)
    return only


def config() -> dict[str, str]:
    return {key: str(value) for key, value in manifest("ConfigMap")["data"].items()}


def is_custom(document: dict[str, Any]) -> bool:
    return str(document["apiVersion"]).startswith(CUSTOM_GROUPS)


# --- the files ---------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = manifest("Kustomization")
    listed = set(kustomization["resources"])
    assert all((K8S / name).exists() for name in listed)
    files = {path.name for path in K8S.glob("*.yaml")}
    # The ServiceMonitor needs the Prometheus Operator: listed in a comment, opt-in.
    assert files - listed == {"kustomization.yaml", "servicemonitor.yaml"}
    assert "# - servicemonitor.yaml" in (K8S / "kustomization.yaml").read_text()
    namespace = manifest("Namespace")["metadata"]["name"]
    assert kustomization["namespace"] == namespace


@pytest.mark.parametrize(
    "kind", sorted(kind for kind, document in documents().items() if not is_custom(document))
)
def test_builtin_kinds_validate(kind: str) -> None:
    version = kubernetes_validate.validate(manifest(kind), KUBERNETES_VERSION, strict=True)
    assert version == KUBERNETES_VERSION


def test_strict_validation_rejects_an_unknown_field() -> None:
    broken = copy.deepcopy(manifest("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def closed(schema: Any) -> Any:
    """The schema with additionalProperties false wherever it lists properties and says
    nothing else: the API server's strict field validation, which drops or refuses a
    field the CRD does not know (a misspelt trigger key would otherwise pass)."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if "properties" in result and "additionalProperties" not in result:
        result["additionalProperties"] = False
    return result


@cache
def keda_validator(kind: str) -> jsonschema.protocols.Validator:
    schema = closed(json.loads((SCHEMAS / KEDA_SCHEMAS[kind]).read_text()))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator: jsonschema.protocols.Validator = validator_class(schema)
    return validator


@pytest.mark.parametrize("kind", sorted(KEDA_SCHEMAS))
def test_keda_objects_validate_against_the_vendored_crds(kind: str) -> None:
    document = manifest(kind)
    assert document["apiVersion"] == "keda.sh/v1alpha1"
    keda_validator(kind).validate(document)


def test_keda_validation_rejects_an_unknown_field() -> None:
    broken = copy.deepcopy(manifest("ScaledObject"))
    broken["spec"]["minReplicas"] = 1
    with pytest.raises(jsonschema.ValidationError):
        keda_validator("ScaledObject").validate(broken)


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings(value)]
    return [node] if isinstance(node, str) else []


def test_placeholders_are_obvious() -> None:
    """Every value to fill in says so, REPLACE_ME_WHAT, and nothing else looks unfinished."""
    for kind in documents():
        for text in strings(manifest(kind)):
            for placeholder in PLACEHOLDER.findall(text):
                assert re.fullmatch(r"REPLACE_ME_[A-Z_]+", placeholder), (kind, placeholder)
            assert not re.search(r"TODO|FIXME|<[a-z-]+>|example\.com", text), (kind, text)
    assert PLACEHOLDER.search(worker_container()["image"])
    assert PLACEHOLDER.search(
        manifest("ServiceAccount")["metadata"]["annotations"][IRSA_ANNOTATION]
    )


# --- the Deployment ------------------------------------------------------------------------


def test_termination_grace_outlasts_the_worker_shutdown() -> None:
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace >= seconds_to_stop(config()), "SIGKILL before a clean stop"


def port_number(port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of a container port."""
    if isinstance(port, int):
        return port
    (number,) = [
        item["containerPort"] for item in worker_container()["ports"] if item["name"] == port
    ]
    assert isinstance(number, int)
    return number


@pytest.mark.parametrize(
    ("probe", "path"),
    [
        ("startupProbe", LIVENESS_PATH),
        ("livenessProbe", LIVENESS_PATH),
        ("readinessProbe", READINESS_PATH),
    ],
)
def test_probes_ask_the_worker_http_server(probe: str, path: str) -> None:
    get = worker_container()[probe]["httpGet"]
    assert get["path"] == path
    assert port_number(get["port"]) == http_port(config())
    assert worker_container()[probe]["timeoutSeconds"] < worker_container()[probe]["periodSeconds"]


def test_startup_probe_waits_out_the_startup_check() -> None:
    probe = worker_container()["startupProbe"]
    budget = probe["periodSeconds"] * probe["failureThreshold"]
    assert budget >= float(str(default("startup_check_seconds")))


def test_container_port_and_scrape_annotations_are_the_worker_http_port() -> None:
    ports = [(item["name"], item["containerPort"]) for item in worker_container()["ports"]]
    assert ports == [("http", http_port(config()))]
    annotations = manifest("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == http_port(config())
    assert annotations["prometheus.io/path"] == METRICS_PATH


def test_runs_locked_down_as_the_image_user() -> None:
    uid, _, gid = dockerfile_runtime().last("USER").partition(":")
    pod = pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    container = worker_container()["securityContext"]
    assert container["runAsNonRoot"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container.get("privileged", False) is False


def test_tmp_is_an_empty_dir_and_the_one_writable_place() -> None:
    mounts = worker_container()["volumeMounts"]
    assert [mount["mountPath"] for mount in mounts] == ["/tmp"]
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    assert "emptyDir" in volumes[mounts[0]["name"]]


def test_resources_have_requests_and_limits() -> None:
    resources = worker_container()["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}, kind


def test_deployment_leaves_the_replica_count_to_keda() -> None:
    spec = manifest("Deployment")["spec"]
    assert "replicas" not in spec
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert args_are_run(worker_container())


def args_are_run(container: dict[str, Any]) -> bool:
    return "command" not in container and container["args"] == ["run"]


def test_identity_is_the_irsa_service_account() -> None:
    account = manifest("ServiceAccount")
    assert pod_spec()["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["annotations"][IRSA_ANNOTATION].startswith("arn:aws:iam::")
    # The worker never calls the Kubernetes API; the IRSA token is a volume of its own.
    assert pod_spec()["automountServiceAccountToken"] is False


def test_settings_come_from_the_config_map(monkeypatch: pytest.MonkeyPatch) -> None:
    (source,) = worker_container()["envFrom"]
    assert source["configMapRef"]["name"] == manifest("ConfigMap")["metadata"]["name"]
    assert unknown_variables(config()) == []
    assert {key for key in config() if not key.startswith("REGWORKER_")} == {"AWS_REGION"}
    for key, value in config().items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.queue_url.startswith("https://sqs.")
    assert config()["REGWORKER_LOG_FORMAT"] == "json"


def selects_the_pods(selector: dict[str, str]) -> bool:
    labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    return bool(selector) and selector.items() <= labels.items()


def test_disruption_budget_service_and_monitor_select_the_worker() -> None:
    assert manifest("Deployment")["spec"]["selector"]["matchLabels"].items() <= (
        manifest("Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    budget = manifest("PodDisruptionBudget")["spec"]
    assert selects_the_pods(budget["selector"]["matchLabels"])
    assert budget["maxUnavailable"] == 1  # minAvailable 1 would block every node drain
    # Unready pods (a fault hold) may be evicted, or a drain during an outage would hang.
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    service = manifest("Service")
    assert selects_the_pods(service["spec"]["selector"])
    (port,) = service["spec"]["ports"]
    assert port_number(port["targetPort"]) == http_port(config())
    monitor = manifest("ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] == port["name"]
    assert endpoint["path"] == METRICS_PATH


# --- KEDA ----------------------------------------------------------------------------------


def sqs_trigger() -> dict[str, Any]:
    (trigger,) = manifest("ScaledObject")["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    assert isinstance(trigger, dict)
    return trigger


def test_scaled_object_scales_the_deployment() -> None:
    spec = manifest("ScaledObject")["spec"]
    target = spec["scaleTargetRef"]
    assert (target.get("kind", "Deployment"), target["name"]) == (
        "Deployment",
        manifest("Deployment")["metadata"]["name"],
    )
    # At least one: with none there is nobody to drain the queue between scale-ups.
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]


def test_trigger_reads_the_queue_the_worker_consumes() -> None:
    metadata = sqs_trigger()["metadata"]
    assert metadata["queueURL"] == config()["REGWORKER_QUEUE_URL"]
    assert metadata["awsRegion"] == config()["AWS_REGION"]
    assert int(metadata["queueLength"]) >= 1
    # Visible messages only, as on ECS: messages in hand are being settled already.
    assert metadata["scaleOnInFlight"] == "false"


def test_trigger_authenticates_with_the_workload_identity() -> None:
    reference = sqs_trigger()["authenticationRef"]
    assert reference.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
    authentication = manifest("TriggerAuthentication")
    assert reference["name"] == authentication["metadata"]["name"]
    assert authentication["spec"]["podIdentity"] == {
        "provider": "aws",
        "identityOwner": "workload",
    }

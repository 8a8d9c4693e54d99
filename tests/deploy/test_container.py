"""Dockerfile, .dockerignore and docker-compose.yml, checked by reading them: Docker does
not run here, so every claim the files make is tested against the code they run."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import boto3
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

from tests.deploy.conftest import HealthServer
from tests.deploy.worker_contract import LIVENESS_PATH, METRICS_PATH, http_port
from tests.support import unique_name
from worker.cli import main, parse
from worker.core.settings import Settings, Sink
from worker.local.sandbox import clean_environ, free_port
from worker.ops.provision import ResourceNames

ROOT = Path(__file__).resolve().parents[2]
LOCALSTACK_IMAGE: Final = "localstack/localstack"
LOCALSTACK_TAG: Final = "4.14.0"  # the last community release without an account token
LOCALSTACK_ACCOUNT: Final = "000000000000"
REGWORKER_SERVICES: Final = {"emulator", "provision", "worker"}
PROMETHEUS_IMAGE: Final = "prom/prometheus"
PROMETHEUS_TAG: Final = "v3.5.0"  # a long-term-support release
PROMETHEUS_PORT: Final = 9090
PROMETHEUS_CONFIG: Final = "/etc/prometheus/prometheus.yml"  # where the image reads it
PINNED_IMAGE: Final = re.compile(r"(?P<image>[a-z0-9./-]+):(?P<tag>[\w.-]+)@sha256:[0-9a-f]{64}")

# --- the Dockerfile ------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]


@cache
def dockerfile() -> list[Stage]:
    """The Dockerfile's stages, read by dockerfile-parse (continuations joined, comments
    and parser directives apart)."""
    stages: list[Stage] = []
    for item in DockerfileParser(path=str(ROOT / "Dockerfile")).structure:
        keyword, arguments = str(item["instruction"]).upper(), " ".join(str(item["value"]).split())
        if keyword == "COMMENT":
            continue
        if keyword == "FROM":
            base, *rest = arguments.split()
            name = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, base))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, arguments))
    return stages


def runtime() -> Stage:
    return dockerfile()[-1]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array instruction argument (the exec form Docker recommends)."""
    value = json.loads(arguments)
    assert isinstance(value, list), arguments
    assert all(isinstance(item, str) for item in value), arguments
    return value


def healthcheck_command() -> list[str]:
    options_and_command = runtime().last("HEALTHCHECK")
    _, _, command = options_and_command.partition("CMD ")
    return exec_form(command)


def test_two_stages_on_slim_python() -> None:
    stages = dockerfile()
    assert [stage.name for stage in stages] == ["builder", "runtime"]
    assert {stage.base.partition("@")[0] for stage in stages} == {"python:3.11-slim"}
    copies = runtime().all("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    assert "PATH=/opt/venv/bin:$PATH" in runtime().last("ENV")


def test_runtime_runs_as_a_numeric_non_root_user() -> None:
    user = runtime().last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), f"USER {user}: numeric, so Kubernetes' runAsNonRoot can verify it"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # Nothing after USER switches back to root.
    after_user = runtime().instructions[
        max(i for i, (name, _) in enumerate(runtime().instructions) if name == "USER") :
    ]
    assert [name for name, _ in after_user].count("USER") == 1


def test_entrypoint_is_the_console_script() -> None:
    assert exec_form(runtime().last("ENTRYPOINT")) == ["regworker"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["regworker"] == "worker.cli:main"
    assert "PYTHONUNBUFFERED=1" in runtime().last("ENV")


def test_default_command_is_a_real_sub_command() -> None:
    command = exec_form(runtime().last("CMD"))
    assert command == ["run"]
    assert parse(command).info_name == "run"


def test_image_installs_no_dev_dependencies() -> None:
    for stage in dockerfile():
        for run in stage.all("RUN"):
            assert not re.search(r"\[(dev|local)\]|\s-e\s|--editable", run), run
    # Two installs: the lock, then the package itself (a regular install, no extras).
    assert [arguments[-1] for arguments in pip_installs()] == [LOCK_FILE, "."]


# --- what the image is built from: a pinned base and a hashed lock --------------------------

LOCK_FILE: Final = "requirements.lock"
PINNED_BASE: Final = re.compile(r"python:3\.11-slim@sha256:[0-9a-f]{64}")
LOCKED: Final = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
HASH: Final = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def test_base_image_is_pinned_by_digest() -> None:
    """A tag moves (every Python patch, every Debian fix); a digest names one image."""
    bases = {stage.base for stage in dockerfile()}
    assert len(bases) == 1, f"both stages on one base: {bases}"
    (base,) = bases
    assert PINNED_BASE.fullmatch(base), f"FROM {base}: pin it as python:3.11-slim@sha256:..."


def pip_installs() -> list[list[str]]:
    """The builder's pip install commands, as argument lists after `install`."""
    commands = []
    for run in dockerfile()[0].all("RUN"):
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["/opt/venv/bin/pip", "install"]:
                commands.append(words[2:])
    return commands


def test_image_installs_dependencies_only_from_the_hashed_lock() -> None:
    dependencies, package = pip_installs()
    # Dependencies: the lock and nothing else, every file checked against its hash, no
    # resolution (a dependency missing from the lock fails `pip check` after).
    assert set(dependencies) == {"--require-hashes", "--no-deps", "-r", LOCK_FILE}
    assert dependencies[dependencies.index("-r") + 1] == LOCK_FILE
    assert f"{LOCK_FILE} ./" in dockerfile()[0].all("COPY")
    # The package: no dependencies of its own resolving, built with the locked setuptools.
    assert set(package) == {"--no-deps", "--no-build-isolation", "."}
    assert any("/opt/venv/bin/pip check" in run for run in dockerfile()[0].all("RUN"))


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: normalized name -> (version, hashes)."""
    entries: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in (ROOT / LOCK_FILE).read_text().splitlines():
        if match := LOCKED.match(line):
            name = canonical(match.group(1))
            assert name not in entries, f"{name} twice"
            entries[name] = (match.group(2), [])
        elif HASH.search(line):
            entries[name][1].extend(HASH.findall(line))
    return entries


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_lock_pins_every_runtime_and_build_dependency_with_hashes() -> None:
    entries = locked()
    assert entries, f"{LOCK_FILE} is empty"
    for name, (version, hashes) in entries.items():
        assert hashes, f"{name}=={version} has no hash"
    named = [*pyproject()["project"]["dependencies"], *pyproject()["build-system"]["requires"]]
    for text in named:
        requirement = Requirement(text)
        name = canonical(requirement.name)
        assert name in entries, f"{text} (pyproject.toml) is not in {LOCK_FILE}: make lock"
        version = entries[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} in {LOCK_FILE}, pyproject.toml asks {text}: make lock"
        )


def runtime_imports() -> set[str]:
    """Top-level modules the package imports when it runs: not the type-only imports
    (under TYPE_CHECKING), nor the optional ones (in a try that catches ImportError)."""

    def visit(node: ast.AST, found: set[str]) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.orelse:
                visit(statement, found)
            return
        if isinstance(node, ast.Try) and any(
            "ImportError" in ast.unparse(handler.type or ast.Name("")) for handler in node.handlers
        ):
            for part in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(part, found)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child, found)

    found: set[str] = set()
    for path in (ROOT / "worker").rglob("*.py"):
        visit(ast.parse(path.read_text()), found)
    return {name for name in found if name not in sys.stdlib_module_names and name != "worker"}


def test_runtime_imports_scanner_skips_type_only_and_optional_imports() -> None:
    imports = runtime_imports()
    assert {"aiobotocore", "boto3", "pydantic", "structlog", "yaml"} <= imports
    assert not any(name.startswith(("types_aiobotocore", "mypy_boto3")) for name in imports)
    assert "localstack_client" not in imports


def test_lock_provides_every_module_the_image_imports() -> None:
    """`regworker provision`, `dlq` and `enqueue` run in the image (docker-compose.yml):
    whatever the package imports must be installed there, named in pyproject.toml or not
    (boto3 is not: aiobotocore 3.x dropped the boto3 extra pyproject.toml still asks for)."""
    providers = importlib.metadata.packages_distributions()
    entries = locked()
    for module in sorted(runtime_imports()):
        distributions = {canonical(name) for name in providers.get(module, [])}
        assert distributions, f"{module}: no installed distribution provides it"
        assert distributions & set(entries), f"import {module}: {distributions} not in the lock"


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def glob_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `*` stays within one path element, a leading
    `**/` matches any number of directories (Go's filepath.Match, as Docker uses it)."""
    regex = ""
    for token in re.findall(r"\*\*/|\*|\?|\[[^\]]*\]|[^*?\[]+", pattern):
        if token == "**/":
            regex += "(?:.*/)?"
        elif token == "*":
            regex += "[^/]*"
        elif token == "?":
            regex += "[^/]"
        else:
            regex += token if token.startswith("[") else re.escape(token)
    return re.compile(regex)


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps this path out of the build context: the path or one of
    its directories matches a pattern (there are no `!` exceptions)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        glob_pattern(pattern).fullmatch(prefix)
        for pattern in dockerignore_patterns()
        for prefix in prefixes
    )


def test_dockerignore_keeps_local_state_out_and_sources_in() -> None:
    assert not any(pattern.startswith("!") for pattern in dockerignore_patterns())
    for path in [
        ".git/HEAD",
        ".venv/bin/python",
        ".tools/uv/bin/uv",
        ".mypy_cache/3.11",
        ".pytest_cache/v",
        ".ruff_cache/x",
        "worker/__pycache__/cli.cpython-311.pyc",
        ".env",
        "tests/deploy/test_container.py",
        "regworker.egg-info/PKG-INFO",
    ]:
        assert ignored(path), path
    for copy in dockerfile()[0].all("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source), f"COPY {source}, but .dockerignore leaves it out"
    for path in [
        "worker/cli/__init__.py",
        "worker/cli/emulator.py",
        "worker/local/emulator.py",
        "pyproject.toml",
        "README.md",
    ]:
        assert not ignored(path), path
    assert not ignored("worker/sample.env")  # "*.env" is for the top level only


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_healthcheck_asks_the_workers_healthz(
    health_server: HealthServer, status: int | None, healthy: bool
) -> None:
    """The HEALTHCHECK's own code, against a stand-in answering /healthz (None: nothing
    listens on the port)."""
    program, flag, code = healthcheck_command()
    assert (program, flag) == ("python", "-c")
    assert LIVENESS_PATH in code
    port = health_server.port if status is not None else free_port()
    if status is not None:
        health_server.status = status
    env = {**clean_environ(), "REGWORKER_HTTP_PORT": str(port)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=30, check=False
    )
    assert (done.returncode == 0) is healthy, done.stderr


def test_healthcheck_defaults_to_the_settings_port() -> None:
    _, _, code = healthcheck_command()
    assert f"'REGWORKER_HTTP_PORT', '{http_port()}'" in code


def test_healthcheck_has_bounded_timing() -> None:
    options = runtime().last("HEALTHCHECK").partition("CMD ")[0].split()
    assert {option.split("=")[0] for option in options} == {
        "--interval",
        "--timeout",
        "--start-period",
        "--retries",
    }


# --- docker-compose.yml --------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    assert isinstance(env, dict), f"{name}: environment as a mapping, so tests can read it"
    return {key: str(value) for key, value in env.items()}


def command(name: str) -> list[str]:
    value = service(name)["command"]
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def container_ports(name: str) -> set[int]:
    ports = {
        int(str(mapping).split(":")[-1].split("/")[0]) for mapping in service(name).get("ports", [])
    }
    return ports | {int(str(port)) for port in service(name).get("expose", [])}


def listening_ports(name: str) -> set[int]:
    """Where the service listens: its regworker --port (the worker: its HTTP server for
    /metrics, /healthz and /readyz), or what its image serves."""
    if name == "worker":
        return {http_port(environment(name))}
    if name in REGWORKER_SERVICES:
        args = command(name)
        return {int(args[args.index("--port") + 1])} if "--port" in args else set()
    if service(name)["image"].startswith(PROMETHEUS_IMAGE + ":"):
        return {PROMETHEUS_PORT}
    return {4566} if service(name)["image"].startswith(LOCALSTACK_IMAGE) else set()


def test_services() -> None:
    assert set(compose()["services"]) == {"localstack", "prometheus", *REGWORKER_SERVICES}


def test_localstack_is_pinned() -> None:
    image, _, tag = service("localstack")["image"].partition(":")
    assert image == LOCALSTACK_IMAGE
    assert tag == LOCALSTACK_TAG
    services = set(environment("localstack")["SERVICES"].split(","))
    assert {"sqs", "sns", "events", "sts", "dynamodb"} <= services
    health = " ".join(service("localstack")["healthcheck"]["test"])
    assert "http://localhost:4566/_localstack/health" in health


def test_regworker_services_share_the_image_built_here() -> None:
    for name in REGWORKER_SERVICES:
        assert service(name)["build"] == "."
        assert service(name)["image"] == "regworker:local"
    assert (ROOT / "Dockerfile").exists()


@pytest.mark.parametrize("name", sorted(REGWORKER_SERVICES))
def test_every_command_is_a_regworker_sub_command(name: str) -> None:
    args = command(name)
    parsed = parse(args)  # click.UsageError (a test error) if not
    assert parsed.info_name == args[0]


def test_ports_agree_with_what_the_services_listen_on() -> None:
    for name in compose()["services"]:
        published = container_ports(name)
        assert published <= listening_ports(name), f"{name} publishes a port nothing serves"
    assert listening_ports("emulator") == {8642}
    assert "0.0.0.0" in command("emulator")  # reachable from the other containers


@pytest.mark.parametrize("name", ["provision", "worker"])
def test_endpoint_urls_name_a_service_and_its_port(name: str) -> None:
    urls = {key: value for key, value in environment(name).items() if value.startswith("http")}
    assert "AWS_ENDPOINT_URL" in urls
    for key, url in urls.items():
        parts = urlsplit(url)
        host = parts.hostname or ""
        assert host in compose()["services"], f"{key}: {host} is no service"
        assert parts.port in listening_ports(host), f"{key}: nothing on {parts.port}"


def test_worker_has_every_variable_it_needs() -> None:
    env = environment("worker")
    required = {
        "REGWORKER_QUEUE_URL",
        "REGWORKER_DLQ_URL",
        "REGWORKER_SINK",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_MARKETPLACE_METERING",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    required.add(
        "REGWORKER_TOPIC_ARN" if env["REGWORKER_SINK"] == "sns" else "REGWORKER_EVENT_BUS_NAME"
    )
    assert required <= set(env)
    assert urlsplit(env["AWS_ENDPOINT_URL_MARKETPLACE_METERING"]).hostname == "emulator"


def test_worker_settings_load_from_the_compose_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in environment("worker").items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.sink is Sink.EVENTBRIDGE
    assert settings.event_bus_name == "regworker-bus"
    assert settings.aws_region == "us-east-1"


COMPOSE_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)")
DURATION_UNITS: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}


def compose_seconds(value: str) -> float:
    """A compose duration ("45s", "1m30s") in seconds."""
    text = str(value)
    parts = COMPOSE_DURATION.findall(text)
    assert parts, f"not a compose duration: {text!r}"
    assert "".join(number + unit for number, unit in parts) == text, text
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


def test_compose_duration_parser() -> None:
    assert compose_seconds("45s") == 45
    assert compose_seconds("1m30s") == 90
    with pytest.raises(AssertionError):
        compose_seconds("45")


def test_worker_gets_time_to_stop_before_sigkill(monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker compose down/stop` sends SIGTERM, then SIGKILL after stop_grace_period
    (10 s by default). The worker may wait out a long poll and then the grace period for
    started messages: a SIGKILL before that strands messages invisible and loses the
    pending deletes (duplicates later). Settings as the compose worker would load them."""
    for key, value in environment("worker").items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    needed = settings.wait_time_seconds + settings.shutdown_grace_seconds + 5
    assert "stop_grace_period" in service("worker"), "compose would SIGKILL after 10 s"
    assert compose_seconds(service("worker")["stop_grace_period"]) >= needed
    assert "stop_signal" not in service("worker")  # SIGTERM, which the worker handles


def test_start_order() -> None:
    assert service("provision")["depends_on"] == {"localstack": {"condition": "service_healthy"}}
    assert service("worker")["depends_on"] == {
        "provision": {"condition": "service_completed_successfully"},
        "emulator": {"condition": "service_healthy"},
    }
    for name in ("localstack", "emulator"):
        assert service(name)["healthcheck"]["test"], f"{name} is waited on as healthy"
    assert service("provision")["restart"] == "no"


def test_provision_writes_into_its_volume() -> None:
    args = command("provision")
    output = Path(args[args.index("--output") + 1])
    mounts = dict(volume.split(":")[::-1] for volume in service("provision")["volumes"])
    assert str(output.parent) in mounts
    assert mounts[str(output.parent)] in compose()["volumes"]


def test_localstack_queue_urls_are_what_the_worker_is_given() -> None:
    """With SQS_ENDPOINT_STRATEGY=path LocalStack answers
    http://<LOCALSTACK_HOST>/queue/<region>/<account>/<name> (checked by hand against
    LocalStack 4.14.0 with these variables); the worker's URLs must be exactly that."""
    localstack = environment("localstack")
    assert localstack["SQS_ENDPOINT_STRATEGY"] == "path"
    worker = environment("worker")
    args = command("provision")
    names = ResourceNames(args[args.index("--name") + 1], fifo="--fifo" in args)
    base = (
        f"http://{localstack['LOCALSTACK_HOST']}/queue/{worker['AWS_REGION']}/{LOCALSTACK_ACCOUNT}"
    )
    assert worker["REGWORKER_QUEUE_URL"] == f"{base}/{names.queue}"
    assert worker["REGWORKER_DLQ_URL"] == f"{base}/{names.dlq}"


def test_worker_settings_are_what_provision_prints(
    aws_env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The compose provision command, run against moto under a fresh prefix: every
    setting it prints is in the worker's environment, with the same value once the
    prefix is put back (URLs compared by queue name: moto's host is not LocalStack's)."""
    args = command("provision")
    name = args[args.index("--name") + 1]
    fresh = unique_name("compose")
    args[args.index("--name") + 1] = fresh
    args[args.index("--output") + 1] = str(tmp_path / "regworker.env")
    assert main(args) == 0
    printed = dict(
        line.split("=", 1) for line in (tmp_path / "regworker.env").read_text().splitlines()
    )
    worker = environment("worker")
    assert set(printed) <= set(worker)
    for key, value in printed.items():
        expected = value.replace(fresh, name)
        if key.endswith("_URL"):
            assert worker[key].rsplit("/", 1)[-1] == expected.rsplit("/", 1)[-1], key
        else:
            assert worker[key] == expected, key
    sqs = boto3.client("sqs")
    assert sqs.get_queue_url(QueueName=fresh)["QueueUrl"] == printed["REGWORKER_QUEUE_URL"]
    capsys.readouterr()


def test_regworker_run_loads_no_tool_or_stand_in_modules() -> None:
    """`regworker run` imports its own command only: no operator tool, no local
    stand-in, no YAML, no aiohttp server (they cost start-up time and memory)."""
    probe = (
        "import sys\n"
        "from worker.cli import parse\n"
        "parse(['run'])\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    tools = {
        "worker.ops.dlq",
        "worker.ops.provision",
        "worker.local.demo",
        "worker.local.emulator",
        "worker.ops.enqueue",
        "worker.cli.enqueue",
        "worker.cli.provision",
        "worker.cli.resolve_customer",
        "worker.cli.dlq",
        "worker.cli.demo",
        "worker.cli.emulator",
        "worker.cli.output",
    }
    assert "worker.core.service" in loaded
    assert loaded.isdisjoint(
        tools | {"worker.local.sandbox", "worker.ops.resolve_customer", "yaml"}
    )
    assert "aiohttp.web" not in loaded


# --- prometheus: `docker compose up` shows the worker's numbers at :9090 --------------------


def test_prometheus_is_pinned_by_digest() -> None:
    match = PINNED_IMAGE.fullmatch(service("prometheus")["image"])
    assert match, "pin it as prom/prometheus:TAG@sha256:..."
    assert (match["image"], match["tag"]) == (PROMETHEUS_IMAGE, PROMETHEUS_TAG)
    assert container_ports("prometheus") == {PROMETHEUS_PORT}
    assert all(str(port).startswith("127.0.0.1:") for port in service("prometheus")["ports"])


def prometheus_config() -> dict[str, Any]:
    """deploy/prometheus.yml, checked to be what the service mounts, read-only, where
    the image reads its configuration."""
    mounts = {}
    for volume in service("prometheus")["volumes"]:
        source, target, *mode = volume.split(":")
        mounts[target] = (source, mode)
    source, mode = mounts[PROMETHEUS_CONFIG]
    assert mode == ["ro"]
    assert "command" not in service("prometheus"), "the image's own flags read that path"
    path = ROOT / source
    assert path == ROOT / "deploy" / "prometheus.yml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_prometheus_scrapes_the_worker_metrics() -> None:
    (job,) = prometheus_config()["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == METRICS_PATH
    (static,) = job["static_configs"]
    assert static["targets"] == [f"worker:{http_port(environment('worker'))}"]
    for target in static["targets"]:
        host, _, port = target.partition(":")
        assert host in compose()["services"], f"{target}: {host} is no service"
        assert int(port) in listening_ports(host), f"{target}: nothing listens on {port}"
    assert service("prometheus")["depends_on"] == {"worker": {"condition": "service_started"}}


def test_worker_http_server_listens_on_every_interface() -> None:
    """Prometheus reaches the worker across the compose network: the server must not be
    bound to 127.0.0.1 (REGWORKER_HTTP_HOST defaults to 0.0.0.0) nor turned off (0)."""
    env = environment("worker")
    assert env.get("REGWORKER_HTTP_HOST", "0.0.0.0") == "0.0.0.0"
    assert http_port(env) != 0

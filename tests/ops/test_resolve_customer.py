"""`regworker resolve-customer` side by side with the real `aws meteringmarketplace
resolve-customer` (awscli v1 on PATH), both against the ResolveCustomer emulator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support import tag
from worker.cli import main
from worker.local.sandbox import LocalService, free_port

REGION = "us-east-1"
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
YAML_INPUT_SKELETON = (
    "RegistrationToken: ''  # [REQUIRED] When a buyer visits your website during the"
    " registration process, the buyer submits a registration token through the browser.\n"
)


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def aws_cli() -> str:
    path = shutil.which("aws")
    if path is None:
        pytest.skip("AWS CLI `aws` not on PATH (the Makefile installs awscli v1 into .tools)")
    return path


@pytest.fixture
def dummy_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in DUMMY_ENV.items():
        monkeypatch.setenv(key, value)


def aws_env() -> dict[str, str]:
    """This process's environment (PATH kept), no AWS_* but the dummy ones."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REGWORKER_"))}
    return kept | DUMMY_ENV


def run_aws(aws_cli: str, *args: str) -> Run:
    done = subprocess.run(
        [aws_cli, "meteringmarketplace", "resolve-customer", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=aws_env(),
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def run_ours(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    try:
        code = main(["resolve-customer", *args])
    except SystemExit as exit_:  # not expected: the command returns argparse's exit code
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


def assert_same(ours: Run, theirs: Run) -> None:
    assert (ours.code, ours.out) == (theirs.code, theirs.out)
    # aws v1 puts a blank line before its one error line; ours is that line alone.
    assert ours.err.strip() == last_line(theirs.err)


# ---------------------------------------------------------------- the same as aws


@pytest.mark.usefixtures("dummy_aws")
@pytest.mark.parametrize(
    "token",
    ["tok-good-{tag}", "product-othercode-{tag}", "invalid-x", "expired-x", "disabled-{tag}"],
)
def test_same_answer_as_aws(
    aws_cli: str, emulator: LocalService, capsys: pytest.CaptureFixture[str], token: str
) -> None:
    args = ["--registration-token", token.format(tag=tag()), "--endpoint-url", emulator.url]
    ours, theirs = run_ours(capsys, *args), run_aws(aws_cli, *args)

    assert_same(ours, theirs)
    if token.startswith(("tok-", "product-")):
        assert ours.code == 0
        answer = json.loads(ours.out)
        assert list(answer) == [
            "CustomerIdentifier",
            "ProductCode",
            "CustomerAWSAccountId",
            "LicenseArn",
        ]
        assert ours.out.startswith('{\n    "CustomerIdentifier": ')
    else:
        assert ours.code == 255
        assert ours.out == ""
        assert ours.err.startswith("An error occurred (")
        assert "when calling the ResolveCustomer operation: " in ours.err


@pytest.mark.usefixtures("dummy_aws")
def test_invalid_token_error_line(
    emulator: LocalService, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = run_ours(capsys, "--registration-token", "invalid-x", "--endpoint-url", emulator.url)
    assert ours == Run(
        255,
        "",
        "An error occurred (InvalidTokenException) when calling the ResolveCustomer"
        " operation: Registration token is invalid.\n",
    )


@pytest.mark.usefixtures("dummy_aws")
def test_same_text_output_as_aws(
    aws_cli: str, emulator: LocalService, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--registration-token", f"tok-{tag()}", "--endpoint-url", emulator.url]
    ours = run_ours(capsys, *args, "--output", "text")
    assert_same(ours, run_aws(aws_cli, *args, "--output", "text"))
    assert ours.out.count("\t") == 3


@pytest.mark.usefixtures("dummy_aws")
@pytest.mark.parametrize(
    ("document", "override", "resolves"),
    [
        ({"RegistrationToken": "tok-json-{tag}"}, None, True),
        ({"RegistrationToken": "invalid-x"}, "tok-override-{tag}", True),
        ({"RegistrationToken": "tok-json-{tag}"}, "expired-x", False),
    ],
    ids=["input-only", "override-wins-resolves", "override-wins-expired"],
)
def test_cli_input_json_as_aws(
    aws_cli: str,
    emulator: LocalService,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    document: dict[str, str],
    override: str | None,
    resolves: bool,
) -> None:
    t = tag()
    text = json.dumps({key: value.format(tag=t) for key, value in document.items()})
    extra = ["--registration-token", override.format(tag=t)] if override else []
    path = tmp_path / "input.json"
    path.write_text(text)

    for source in (text, f"file://{path}"):
        args = ["--cli-input-json", source, *extra, "--endpoint-url", emulator.url]
        ours = run_ours(capsys, *args)
        assert_same(ours, run_aws(aws_cli, *args))
        assert ours.code == (0 if resolves else 255)


@pytest.mark.usefixtures("dummy_aws")
@pytest.mark.parametrize("token", ["tok-yaml-{tag}", "invalid-x"])
def test_cli_input_yaml_answers_as_aws_does_for_the_same_json(
    aws_cli: str,
    emulator: LocalService,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    token: str,
) -> None:
    """awscli v1 has no --cli-input-yaml: the same input as JSON must give the same."""
    token = token.format(tag=tag())
    path = tmp_path / "input.yaml"
    path.write_text(f"# filled in from the yaml-input skeleton\nRegistrationToken: {token}\n")
    theirs = run_aws(
        aws_cli,
        "--cli-input-json",
        json.dumps({"RegistrationToken": token}),
        "--endpoint-url",
        emulator.url,
    )

    for source in (path.read_text(), f"file://{path}"):
        ours = run_ours(capsys, "--cli-input-yaml", source, "--endpoint-url", emulator.url)
        assert_same(ours, theirs)


@pytest.mark.usefixtures("dummy_aws")
@pytest.mark.parametrize(
    "args",
    [["--generate-cli-skeleton"], ["--generate-cli-skeleton", "input"]],
    ids=["no-value", "input"],
)
def test_input_skeleton_as_aws(
    aws_cli: str, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    ours = run_ours(capsys, *args)
    assert_same(ours, run_aws(aws_cli, *args))
    assert ours == Run(0, '{\n    "RegistrationToken": ""\n}\n', "")


@pytest.mark.usefixtures("dummy_aws")
@pytest.mark.parametrize(
    "args",
    [
        ["--registration-token", "tok-1"],
        ["--cli-input-json", '{"RegistrationToken": "tok-1"}'],
    ],
    ids=["token", "cli-input-json"],
)
def test_output_skeleton_as_aws(
    aws_cli: str, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """The same sample answer, laid out the same. The worker's botocore model may be newer
    than the one awscli pins: members it adds may only follow the ones aws prints."""
    ours = run_ours(capsys, "--generate-cli-skeleton", "output", *args)
    theirs = run_aws(aws_cli, "--generate-cli-skeleton", "output", *args)

    assert (ours.code, ours.err, theirs.code) == (0, "", 0)
    ours_answer, their_answer = json.loads(ours.out), json.loads(theirs.out)
    assert list(ours_answer)[: len(their_answer)] == list(their_answer)
    assert {key: ours_answer[key] for key in their_answer} == their_answer
    assert set(ours_answer) - set(their_answer) <= {"Metadata"}
    assert ours.out == json.dumps(ours_answer, indent=4) + "\n"
    if ours_answer == their_answer:
        assert ours.out == theirs.out


@pytest.mark.usefixtures("dummy_aws")
def test_output_skeleton_as_text(aws_cli: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--generate-cli-skeleton", "output", "--registration-token", "t", "--output", "text"]
    ours, theirs = run_ours(capsys, *args), run_aws(aws_cli, *args)
    assert ours.code == theirs.code == 0
    assert (
        ours.out.splitlines()[0]
        == theirs.out.splitlines()[0]
        == ("CustomerAWSAccountId\tCustomerIdentifier\tLicenseArn\tProductCode")
    )


@pytest.mark.usefixtures("dummy_aws")
def test_yaml_input_skeleton_matches_the_json_one(
    aws_cli: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """awscli v1 lacks yaml-input (v2 has it): ours prints v2's form, which loads to
    the same document as v1's JSON skeleton."""
    ours = run_ours(capsys, "--generate-cli-skeleton", "yaml-input")
    theirs = run_aws(aws_cli, "--generate-cli-skeleton", "input")

    assert ours == Run(0, YAML_INPUT_SKELETON, "")
    assert yaml.safe_load(ours.out) == json.loads(theirs.out)


@pytest.mark.usefixtures("dummy_aws")
@pytest.mark.parametrize(
    "args", [[], ["--generate-cli-skeleton", "output"]], ids=["nothing", "output-skeleton"]
)
def test_missing_token_is_bad_usage_as_with_aws(
    aws_cli: str, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    ours, theirs = run_ours(capsys, *args), run_aws(aws_cli, *args)
    assert ours.code == theirs.code == 2
    assert ours.out == theirs.out == ""
    required = "error: the following arguments are required: --registration-token"
    assert last_line(theirs.err).endswith(required)
    assert ours.err == f"regworker resolve-customer: {required}\n"


# ---------------------------------------------------------------- ours alone


@pytest.mark.usefixtures("dummy_aws")
def test_yaml_output(emulator: LocalService, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--registration-token", f"tok-{tag()}", "--endpoint-url", emulator.url]
    as_json = run_ours(capsys, *args)
    as_yaml = run_ours(capsys, *args, "--output", "yaml")
    assert as_yaml.code == 0
    assert yaml.safe_load(as_yaml.out) == json.loads(as_json.out)
    assert as_yaml.out.startswith("CustomerIdentifier: ")


@pytest.mark.usefixtures("dummy_aws")
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--cli-input-json", "{bad SECRET-TOKEN"],
            "Error parsing parameter 'cli-input-json': Invalid JSON: ",
        ),
        (["--cli-input-json", '["SECRET-TOKEN"]'], "the input must be a mapping"),
        (
            ["--cli-input-yaml", "RegistrationToken: SECRET-TOKEN: x"],
            "Invalid YAML received: mapping values are not allowed here (line 1, column ",
        ),
        (
            ["--cli-input-yaml", "RegistrationToken: 12345678"],
            "value: (not shown), type: <class 'int'>",
        ),
        (
            ["--cli-input-json", '{"Foo": "x"}'],
            "Parameter validation failed: Missing required parameter in input:"
            ' "RegistrationToken"; Unknown parameter in input: "Foo"',
        ),
        (
            ["--cli-input-json", "file:///nonexistent/in.json"],
            "Error parsing parameter '--cli-input-json': Unable to load paramfile"
            " file:///nonexistent/in.json: [Errno 2]",
        ),
        (
            ["--registration-token", "SECRET-TOKEN", "--endpoint-url", "nope"],
            'Bad value for --endpoint-url "nope": scheme is missing.',
        ),
    ],
)
def test_bad_input_is_bad_usage_and_never_shows_the_token(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    ours = run_ours(capsys, *args)
    assert (ours.code, ours.out) == (2, "")
    assert expected in ours.err
    assert ours.err.count("\n") == 1
    assert "SECRET-TOKEN" not in ours.err
    assert "12345678" not in ours.err


def test_json_and_yaml_input_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    ours = run_ours(capsys, "--cli-input-json", "{}", "--cli-input-yaml", "{}")
    assert (ours.code, ours.out) == (2, "")
    assert "not allowed with argument" in ours.err


@pytest.mark.usefixtures("dummy_aws")
def test_token_from_a_file(
    emulator: LocalService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text("expired-in-a-file")
    ours = run_ours(
        capsys, "--registration-token", f"file://{path}", "--endpoint-url", emulator.url
    )
    assert ours.code == 255
    assert "(ExpiredTokenException)" in ours.err


@pytest.mark.usefixtures("dummy_aws")
def test_no_connection_is_a_failed_call(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    url = f"http://127.0.0.1:{free_port()}"
    ours = run_ours(capsys, "--registration-token", "tok-1", "--endpoint-url", url)
    assert ours == Run(255, "", f'Could not connect to the endpoint URL: "{url}/"\n')


def test_no_credentials_or_region_as_aws_says_it(
    emulator: LocalService, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without credentials botocore would ask the EC2 instance metadata service next:
    # that address is off this machine, so the lookup is switched off.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    args = ["--registration-token", "tok-1", "--endpoint-url", emulator.url]
    no_region = run_ours(capsys, *args)
    assert no_region.code == 255
    assert no_region.err.startswith("You must specify a region.")

    no_credentials = run_ours(capsys, *args, "--region", REGION)
    assert no_credentials.code == 255
    assert no_credentials.err.startswith("Unable to locate credentials.")


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["resolve-customer", "--help"])
    text = capsys.readouterr().out
    assert code == 0
    for needle in ("exit codes:", "  2    bad usage", "  255  the call failed"):
        assert needle in text

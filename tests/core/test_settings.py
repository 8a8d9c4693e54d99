"""Settings from REGWORKER_* variables: every error names the variable to fix, and the
CLI turns a bad setting into one line on stderr and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import regworker
from worker.core.settings import SettingsError, Sink, load_settings, unknown_variables
from worker.local.sandbox import clean_environ

QUEUE_URL = "http://127.0.0.1:4566/000000000000/registrations"
DLQ_URL = "http://127.0.0.1:4566/000000000000/registrations-dlq"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """The two required variables set, and a working directory without a .env file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REGWORKER_QUEUE_URL", QUEUE_URL)
    monkeypatch.setenv("REGWORKER_DLQ_URL", DLQ_URL)
    return monkeypatch


def settings_error() -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value)


def test_defaults(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.queue_url, settings.dlq_url) == (QUEUE_URL, DLQ_URL)
    assert settings.sink is Sink.EVENTBRIDGE
    assert settings.event_bus_name == "default"
    assert settings.aws_region == "us-east-1"
    assert settings.allowed_product_codes == frozenset()
    assert settings.is_fifo is False


def test_missing_queue_url_is_named(env: pytest.MonkeyPatch) -> None:
    env.delenv("REGWORKER_QUEUE_URL")
    message = settings_error()
    assert message.startswith("REGWORKER_QUEUE_URL: ")
    assert "REGWORKER_DLQ_URL" not in message


def test_a_queue_url_must_be_a_url(env: pytest.MonkeyPatch) -> None:
    env.setenv("REGWORKER_QUEUE_URL", "registrations")
    assert settings_error() == (
        "REGWORKER_QUEUE_URL: must be an SQS queue URL (http:// or https://)"
    )


def test_bad_sink_is_named(env: pytest.MonkeyPatch) -> None:
    env.setenv("REGWORKER_SINK", "kinesis")
    message = settings_error()
    assert message.startswith("REGWORKER_SINK: ")
    assert "eventbridge" in message
    assert "sns" in message


def test_sns_sink_needs_a_topic_arn(env: pytest.MonkeyPatch) -> None:
    env.setenv("REGWORKER_SINK", "sns")
    assert "REGWORKER_TOPIC_ARN" in settings_error()
    env.setenv("REGWORKER_TOPIC_ARN", "arn:aws:sns:us-east-1:000000000000:registered")
    settings = load_settings()
    assert settings.sink is Sink.SNS
    assert settings.topic_arn.endswith(":registered")


def test_several_problems_are_reported_together_on_one_line(env: pytest.MonkeyPatch) -> None:
    env.delenv("REGWORKER_QUEUE_URL")
    env.setenv("REGWORKER_MAX_IN_FLIGHT", "0")
    message = settings_error()
    assert "REGWORKER_QUEUE_URL: " in message
    assert "REGWORKER_MAX_IN_FLIGHT: " in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "codes"),
    [
        ("prod-a", {"prod-a"}),
        (" prod-a, prod-b ,,prod-c,", {"prod-a", "prod-b", "prod-c"}),
        ("", set()),
        (" , ", set()),
    ],
)
def test_allowed_product_codes_is_a_comma_list(
    env: pytest.MonkeyPatch, value: str, codes: set[str]
) -> None:
    env.setenv("REGWORKER_ALLOWED_PRODUCT_CODES", value)
    assert load_settings().allowed_product_codes == frozenset(codes)


@pytest.mark.parametrize(
    ("variables", "region"),
    [
        ({}, "us-east-1"),
        ({"AWS_DEFAULT_REGION": "eu-west-1"}, "eu-west-1"),
        ({"AWS_REGION": "eu-central-1"}, "eu-central-1"),
        ({"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"}, "eu-central-1"),
        (
            {
                "REGWORKER_AWS_REGION": "ap-south-1",
                "AWS_REGION": "eu-central-1",
                "AWS_DEFAULT_REGION": "eu-west-1",
            },
            "ap-south-1",
        ),
        ({"REGWORKER_AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "eu-west-1"}, "ap-south-1"),
    ],
)
def test_region_precedence(env: pytest.MonkeyPatch, variables: dict[str, str], region: str) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    assert load_settings().aws_region == region


@pytest.mark.parametrize(("visibility", "budget"), [(60, 20.0), (90, 30.0), (10, 10 / 3)])
def test_resolve_budget_defaults_to_a_third_of_visibility(
    env: pytest.MonkeyPatch, visibility: int, budget: float
) -> None:
    env.setenv("REGWORKER_VISIBILITY_TIMEOUT_SECONDS", str(visibility))
    settings = load_settings()
    assert settings.resolve_budget_seconds is None
    assert settings.resolve_budget == pytest.approx(budget)


def test_an_explicit_budget_that_fits_is_kept(env: pytest.MonkeyPatch) -> None:
    env.setenv("REGWORKER_VISIBILITY_TIMEOUT_SECONDS", "30")
    env.setenv("REGWORKER_RESOLVE_BUDGET_SECONDS", "24.5")  # 30 - 5 s call timeout = 25
    assert load_settings().resolve_budget == 24.5


@pytest.mark.parametrize("budget", ["25", "26", "120"])
def test_a_budget_that_does_not_fit_in_visibility_is_refused(
    env: pytest.MonkeyPatch, budget: str
) -> None:
    env.setenv("REGWORKER_VISIBILITY_TIMEOUT_SECONDS", "30")
    env.setenv("REGWORKER_RESOLVE_BUDGET_SECONDS", budget)
    message = settings_error()
    assert message.startswith("REGWORKER_RESOLVE_BUDGET_SECONDS ")
    assert "REGWORKER_RESOLVE_TIMEOUT_SECONDS" in message
    assert "REGWORKER_VISIBILITY_TIMEOUT_SECONDS" in message


def test_dotenv_in_the_working_directory_is_read_and_the_environment_wins(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "REGWORKER_MAX_IN_FLIGHT=7\nREGWORKER_SINK=sns\nREGWORKER_TOPIC_ARN=arn:aws:sns:x\n"
    )
    env.setenv("REGWORKER_MAX_IN_FLIGHT", "9")
    settings = load_settings()
    assert settings.sink is Sink.SNS
    assert settings.max_in_flight == 9


def test_overrides_beat_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("REGWORKER_MAX_IN_FLIGHT", "9")
    settings = load_settings(max_in_flight=3, queue_url=QUEUE_URL + ".fifo")
    assert settings.max_in_flight == 3
    assert settings.queue_url == QUEUE_URL + ".fifo"
    assert settings.is_fifo
    assert settings.dlq_url == DLQ_URL  # what no override names still comes from the environment


def test_cli_with_a_missing_queue_url_exits_2_with_one_line(tmp_path: Path) -> None:
    env = clean_environ() | {"REGWORKER_DLQ_URL": DLQ_URL}
    done = regworker(["run"], env, tmp_path)  # no .env to read
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "REGWORKER_QUEUE_URL" in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_cli_names_a_bad_setting_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        f"REGWORKER_QUEUE_URL={QUEUE_URL}\nREGWORKER_DLQ_URL={DLQ_URL}\nREGWORKER_SINK=sns\n"
    )
    done = regworker(["run"], clean_environ(), tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "REGWORKER_TOPIC_ARN" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REGWORKER_WAIT_TIME_SECONDS", "0"),  # a receive loop with no wait: a tight loop
        ("REGWORKER_REQUEUE_BASE_SECONDS", "0"),  # handed back visible at once, again and again
        ("REGWORKER_FAULT_PROBE_MAX_SECONDS", "0.5"),
        ("REGWORKER_CONFIG_FAULT_PAUSE_SECONDS", "0.5"),  # the old name, under 1 s
        ("REGWORKER_SHUTDOWN_GRACE_SECONDS", "0"),
        ("REGWORKER_STARTUP_CHECK_SECONDS", "0"),
    ],
)
def test_settings_that_make_no_sense_are_refused(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env.setenv(variable, value)
    message = settings_error()
    # A variable read under two names is reported by its current one.
    named = "REGWORKER_FAULT_PROBE_MAX_SECONDS" if "FAULT" in variable else variable
    assert message.startswith(f"{named}: "), message


def test_the_old_name_of_the_probe_wait_is_still_read(env: pytest.MonkeyPatch) -> None:
    env.setenv("REGWORKER_CONFIG_FAULT_PAUSE_SECONDS", "7")
    assert load_settings().fault_probe_max_seconds == 7


def test_an_idempotency_lease_shorter_than_a_call_is_refused(env: pytest.MonkeyPatch) -> None:
    """The claim's lease is the visibility timeout, renewed at half time: half of it must
    outlast one slow DynamoDB answer (the 10 s read timeout)."""
    env.setenv("REGWORKER_IDEMPOTENCY_TABLE", "claims")
    env.setenv("REGWORKER_VISIBILITY_TIMEOUT_SECONDS", "19")
    assert settings_error().startswith("REGWORKER_VISIBILITY_TIMEOUT_SECONDS: at least 20")
    env.setenv("REGWORKER_VISIBILITY_TIMEOUT_SECONDS", "20")
    assert load_settings().visibility_timeout_seconds == 20


def test_unknown_variables_are_named_with_the_closest_setting() -> None:
    names = [
        "REGWORKER_SINKK",
        "REGWORKER_QUEUE_URL",
        "regworker_wait_time_secs",
        "REGWORKER_CONFIG_FAULT_PAUSE_SECONDS",  # an old name, still read
        "REGWORKER_NOTHING_LIKE_IT",
        "AWS_REGION",
    ]
    assert unknown_variables(names) == [
        "REGWORKER_NOTHING_LIKE_IT",
        "REGWORKER_SINKK (did you mean REGWORKER_SINK?)",
        "REGWORKER_WAIT_TIME_SECS (did you mean REGWORKER_WAIT_TIME_SECONDS?)",
    ]


def test_run_warns_of_a_misspelt_variable_from_the_environment_or_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REGWORKER_MAX_INFLIGHT=5\n")
    env = clean_environ() | {
        "REGWORKER_QUEUE_URL": QUEUE_URL,
        "REGWORKER_DLQ_URL": DLQ_URL,
        "REGWORKER_SINKK": "sns",
        "REGWORKER_STARTUP_CHECK_SECONDS": "1",
        "REGWORKER_LOG_FORMAT": "json",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: the start-up check stops it
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    done = regworker(["run"], env, tmp_path)
    assert done.returncode == 2
    warning = next(line for line in done.stderr.splitlines() if "unknown_settings" in line)
    assert "REGWORKER_SINKK (did you mean REGWORKER_SINK?)" in warning
    assert "REGWORKER_MAX_INFLIGHT (did you mean REGWORKER_MAX_IN_FLIGHT?)" in warning


def test_a_misspelt_variable_is_named_when_the_settings_stop_the_run(tmp_path: Path) -> None:
    """REGWORKER_QUEUE_URLL set, REGWORKER_QUEUE_URL missing: the one line that stops the
    run says what is missing and which variable was probably meant."""
    env = clean_environ() | {"REGWORKER_QUEUE_URLL": QUEUE_URL, "REGWORKER_DLQ_URL": DLQ_URL}
    done = regworker(["run"], env, tmp_path)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("regworker run: invalid settings: REGWORKER_QUEUE_URL")
    assert line.endswith(
        "; no setting reads REGWORKER_QUEUE_URLL (did you mean REGWORKER_QUEUE_URL?)"
    )

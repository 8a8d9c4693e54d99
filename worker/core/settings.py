"""The one settings object, built at the edge (the CLI) and passed in.

Variables use the prefix ``REGWORKER_`` and may also come from a ``.env`` file.
AWS clients are configured by the standard AWS variables (endpoints, profiles,
credentials); only the region is read here, by the one region rule of
``worker.aws.region``, because botocore reads ``AWS_DEFAULT_REGION`` but ECS and Lambda
set ``AWS_REGION``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.aws.region import REGION_VARIABLES, profile_region

ENV_PREFIX = "REGWORKER_"
ENV_FILE = ".env"
# One publish or DynamoDB call's bound: connect plus read timeout (clients.py uses them).
CALL_CONNECT_TIMEOUT_SECONDS = 5
CALL_READ_TIMEOUT_SECONDS = 10


class Sink(StrEnum):
    EVENTBRIDGE = "eventbridge"
    SNS = "sns"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class MetricsOutput(StrEnum):
    PROMETHEUS = "prometheus"
    EMF = "emf"
    OFF = "off"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    queue_url: str = Field(description="URL of the SQS queue the web tier writes tokens to.")
    dlq_url: str = Field(description="URL of the dead-letter queue for poison messages.")
    sink: Sink = Field(Sink.EVENTBRIDGE, description="Where events go: eventbridge or sns.")
    event_bus_name: str = Field("default", description="EventBridge bus name or ARN.")
    topic_arn: str = Field("", description="SNS topic ARN (required when sink=sns).")
    event_source: str = Field(
        "regworker.marketplace", description="EventBridge Source of published events."
    )
    # The aliases and the default are worker.aws.region's rule, so that `regworker run`
    # and every tool pick the same region (tests/aws/test_region.py).
    aws_region: str = Field(
        default_factory=profile_region,
        validation_alias=AliasChoices(*REGION_VARIABLES),
        description="AWS region (REGWORKER_AWS_REGION, else AWS_REGION, else"
        " AWS_DEFAULT_REGION, else the AWS profile's, else us-east-1).",
    )

    max_in_flight: int = Field(50, ge=1, le=10_000, description="Messages held at once, at most.")
    receive_concurrency: int = Field(2, ge=1, le=32, description="Parallel long polls.")
    wait_time_seconds: int = Field(
        20, ge=1, le=20, description="SQS long-poll wait (0 would poll in a tight loop)."
    )
    visibility_timeout_seconds: int = Field(
        60, ge=10, le=43_200, description="Visibility timeout asked for on receive."
    )
    max_receives: int = Field(
        5, ge=1, le=1000, description="Deliveries before a transient failure is RetriesExhausted."
    )
    allowed_product_codes: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), description="Comma-separated product codes to accept; empty accepts all."
    )

    resolve_rate_limit: float = Field(
        20.0,
        gt=0,
        le=10_000,
        description="Ceiling of ResolveCustomer calls per second; the flow controller finds"
        " the account's quota below it.",
    )
    resolve_start_rate: float = Field(
        4.0, gt=0, le=10_000, description="ResolveCustomer calls per second at start-up."
    )
    resolve_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="Timeout of one ResolveCustomer call."
    )
    resolve_budget_seconds: float | None = Field(
        None,
        gt=0,
        description="Time spent retrying in place before requeueing; default 1/3 of visibility.",
    )
    retry_base_seconds: float = Field(0.2, gt=0, le=60, description="First in-place retry wait.")
    retry_max_seconds: float = Field(5.0, gt=0, le=300, description="Longest in-place retry wait.")
    requeue_base_seconds: int = Field(
        30, ge=1, le=43_200, description="Visibility after the first exhausted budget; doubles."
    )
    requeue_max_seconds: int = Field(
        900, ge=0, le=43_200, description="Longest requeue visibility."
    )
    fault_probe_max_seconds: float = Field(
        30.0,
        ge=1,
        le=3600,
        validation_alias=AliasChoices(
            "REGWORKER_FAULT_PROBE_MAX_SECONDS", "REGWORKER_CONFIG_FAULT_PAUSE_SECONDS"
        ),
        description="Longest wait between recovery probes during a fault hold"
        " (REGWORKER_CONFIG_FAULT_PAUSE_SECONDS, its old name, is still read).",
    )
    startup_check_seconds: float = Field(
        30.0,
        ge=1,
        le=600,
        description="How long the start-up check retries answers that may pass (throttling,"
        " 5xx, no connection) before it calls the setting wrong.",
    )
    idempotency_table: str = Field(
        "", description="DynamoDB table for exactly-once publishing; empty turns it off."
    )
    idempotency_ttl_seconds: int = Field(
        7 * 24 * 3600, ge=3600, description="How long a token's record is kept."
    )
    shutdown_grace_seconds: float = Field(
        20.0, ge=1, le=3600, description="Time in-flight messages get to finish on shutdown."
    )
    publish_linger_seconds: float = Field(
        0.05, ge=0, le=5, description="How long a batch waits to fill before it is sent."
    )

    http_host: str = Field(
        "0.0.0.0",  # noqa: S104 (probes and scrapes come from outside the container)
        description="Address of /metrics, /healthz and /readyz.",
    )
    http_port: int = Field(
        8080, ge=0, le=65_535, description="Port of /metrics, /healthz and /readyz; 0 turns it off."
    )
    metrics: MetricsOutput = Field(
        MetricsOutput.PROMETHEUS,
        description="prometheus (served on /metrics), emf (CloudWatch Embedded Metric Format"
        " lines on stdout) or off.",
    )
    liveness_seconds: float = Field(
        120.0,
        ge=30,
        le=3600,
        description="/healthz fails after this long with no receive and no settled message"
        " (outside a fault hold).",
    )
    progress_log_seconds: float = Field(
        60.0, ge=0, le=3600, description="Interval of the one-line progress log; 0 turns it off."
    )

    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: LogFormat = Field(LogFormat.JSON, description="json or console.")

    @field_validator("allowed_product_codes", mode="before")
    @classmethod
    def _split_codes(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(code.strip() for code in value.split(",") if code.strip())
        return value

    @field_validator("queue_url", "dlq_url")
    @classmethod
    def _queue_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an SQS queue URL (http:// or https://)")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.sink is Sink.SNS and not self.topic_arn.startswith("arn:"):
            raise ValueError("REGWORKER_TOPIC_ARN: required (an SNS topic ARN) when sink=sns")
        if self.sink is Sink.EVENTBRIDGE and not self.event_bus_name:
            raise ValueError("REGWORKER_EVENT_BUS_NAME: required when sink=eventbridge")
        if self.queue_url == self.dlq_url:
            raise ValueError("REGWORKER_DLQ_URL: must differ from REGWORKER_QUEUE_URL")
        # The lease is renewed on every beat once half of it is left: that half must
        # outlast one slow DynamoDB answer (the read timeout; connections are kept open).
        lease_floor = 2 * CALL_READ_TIMEOUT_SECONDS
        if self.idempotency_table and self.visibility_timeout_seconds < lease_floor:
            raise ValueError(
                f"REGWORKER_VISIBILITY_TIMEOUT_SECONDS: at least {lease_floor} with"
                " REGWORKER_IDEMPOTENCY_TABLE (it is the claim's lease, renewed at half"
                " time: one slow DynamoDB call must not outlast that half)"
            )
        if self.retry_base_seconds > self.retry_max_seconds:
            raise ValueError("REGWORKER_RETRY_BASE_SECONDS: must not exceed RETRY_MAX_SECONDS")
        if self.resolve_budget >= self.visibility_timeout_seconds - self.resolve_timeout_seconds:
            raise ValueError(
                "REGWORKER_RESOLVE_BUDGET_SECONDS (default 1/3 of the visibility timeout) plus"
                " REGWORKER_RESOLVE_TIMEOUT_SECONDS must fit inside"
                " REGWORKER_VISIBILITY_TIMEOUT_SECONDS"
            )
        return self

    @property
    def resolve_budget(self) -> float:
        """Retrying in place stops here, well inside the visibility timeout, so a message
        is never worked on while SQS already hands it to another consumer."""
        if self.resolve_budget_seconds is not None:
            return self.resolve_budget_seconds
        return self.visibility_timeout_seconds / 3

    @property
    def is_fifo(self) -> bool:
        return self.queue_url.endswith(".fifo")


def setting_names() -> frozenset[str]:
    """Every ``REGWORKER_*`` variable a setting is read from (old names included)."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [ENV_PREFIX + name]
        names.update(str(choice).upper() for choice in choices)
    return frozenset(name for name in names if name.startswith(ENV_PREFIX))


def unknown_variables(variables: Iterable[str]) -> list[str]:
    """The ``REGWORKER_*`` names among ``variables`` that no setting reads, each with the
    closest setting's name when one is near: a misspelt variable would otherwise leave
    its setting at the default without a word."""
    known = setting_names()
    problems = []
    for name in sorted({name.upper() for name in variables}):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        problems.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return problems


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it."""


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and .env), naming the bad variable on error."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None


def describe_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        message = str(item["msg"]).removeprefix("Value error, ")
        if location:
            # A field read under an alias reports the variable as it was set.
            name = location[0].upper()
            name = (
                name
                if name.startswith(ENV_PREFIX) or name.startswith("AWS_")
                else ENV_PREFIX + name
            )
            problems.append(f"{name}: {message}")
        else:
            problems.append(message)
    return "; ".join(problems)

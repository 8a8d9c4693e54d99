"""What every deployment of the worker relies on, in one place for the deploy tests:
the HTTP server's port and paths, and the time the worker needs to stop after SIGTERM.
Numbers come from worker.core.settings.Settings wherever the settings have them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from worker.core.settings import ENV_PREFIX, Settings

METRICS_PATH: Final = "/metrics"
LIVENESS_PATH: Final = "/healthz"
READINESS_PATH: Final = "/readyz"
# The margin past wait time + shutdown grace that the worker asks of orchestrators.
STOP_MARGIN_SECONDS: Final = 5


def default(name: str) -> object:
    return Settings.model_fields[name].default


def setting(env: Mapping[str, str], name: str) -> float:
    """One numeric setting as a worker given ``env`` would read it."""
    value = env.get(ENV_PREFIX + name.upper())
    return float(value) if value is not None else float(str(default(name)))


def http_port(env: Mapping[str, str] | None = None) -> int:
    """The port the worker serves /metrics, /healthz and /readyz on, given ``env``."""
    value = (env or {}).get(ENV_PREFIX + "HTTP_PORT")
    return int(value) if value is not None else int(str(default("http_port")))


def seconds_to_stop(env: Mapping[str, str] | None = None) -> float:
    """SIGTERM to exit at worst: a long poll already waiting finishes, started messages
    get the shutdown grace, then the deletes are flushed (the margin)."""
    env = env or {}
    return (
        setting(env, "wait_time_seconds")
        + setting(env, "shutdown_grace_seconds")
        + STOP_MARGIN_SECONDS
    )

"""structlog set-up: JSON lines for machines, a console renderer for people.

JSON lines are rendered by orjson straight to bytes (structlog's recommended fast path):
the worker writes one line per message, so the renderer is on the hot path. Loggers are
cached on first use, as structlog recommends for production.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from worker.core.settings import LogFormat


def configure_logging(level: str = "INFO", log_format: LogFormat = LogFormat.JSON) -> None:
    json_lines = log_format is LogFormat.JSON
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=orjson.dumps)
        if json_lines
        # Plain tracebacks: with rich installed (the CLI's) structlog would draw rich ones,
        # pages long for a one-line log event.
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    factory: structlog.types.WrappedLogger = (
        structlog.BytesLoggerFactory(file=sys.stderr.buffer)
        if json_lines
        else structlog.PrintLoggerFactory(file=sys.stderr)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def log_outside_message(emit: Callable[..., object], event: str, **fields: Any) -> None:
    """Log a component's event (a rate change, a fault and its recovery) without the
    message context it happens in: one message's id and token on it would say the event
    was that message's."""
    contextvars.Context().run(emit, event, **fields)

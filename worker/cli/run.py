"""``regworker run``: the worker process, its exit codes and its signals."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Callable
from typing import Final

import click
import structlog

from worker.cli.base import RawEpilogCommand
from worker.core.consumer import Consumer, ReceiveLoopDied
from worker.core.logs import configure_logging
from worker.core.service import RunReport, run_worker
from worker.core.settings import (
    Settings,
    SettingsError,
    load_settings,
    unknown_variables,
)
from worker.core.startup_check import StartupCheckFailed

log = structlog.get_logger(__name__)

# See tune_garbage_collector.
GC_YOUNG_THRESHOLD: Final = 20_000


RUN_HELP = (
    "Consume tokens from REGWORKER_QUEUE_URL, resolve them with ResolveCustomer,"
    " publish CustomerRegistered and dead-letter poison messages. Settings come from"
    " REGWORKER_* variables (and .env); AWS endpoints and credentials from the standard"
    " AWS variables."
)
RUN_EPILOG = (
    "examples:\n"
    "  regworker run\n"
    "  regworker run --until-empty   # stop once the queue is drained (batch jobs, tests)\n"
    "SIGTERM or SIGINT stops receiving and lets in-flight messages finish;"
    " a second signal stops at once (exit 130 after Ctrl-C, 143 after SIGTERM).\n"
    "exit status: 0 stopped or drained; 1 the receive loop failed; 2 a setting is"
    " wrong (one line names it, from the settings or the start-up check)."
)


@click.command("run", cls=RawEpilogCommand, help=RUN_HELP, epilog=RUN_EPILOG)
@click.option("--until-empty", is_flag=True, help="exit 0 once the queue is drained")
def command(until_empty: bool) -> int:
    return run_command(until_empty=until_empty)


def run_command(*, until_empty: bool) -> int:
    try:
        settings = load_settings()
    except SettingsError as error:
        # A misspelt variable is the likeliest cause of a missing one: name it here too.
        unknown = unknown_variables(os.environ)
        hint = f"; no setting reads {', '.join(unknown)}" if unknown else ""
        print(f"regworker run: invalid settings: {error}{hint}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    warn_unknown_variables()
    flush_traces = configure_tracing()
    tune_garbage_collector()
    signals = SignalHandling()
    try:
        report = asyncio.run(signals.run(settings, until_empty=until_empty))
    except StartupCheckFailed as error:
        print(f"regworker run: {error}", file=sys.stderr)
        return 2
    except ReceiveLoopDied as error:
        log.error("worker_failed", error=str(error))
        return 1
    except asyncio.CancelledError:
        log.warning("worker_cancelled", note="in-flight messages come back after visibility")
        print("regworker run: stopped at once; messages in hand come back", file=sys.stderr)
        return signals.forced_exit_code
    finally:
        flush_traces()
    print(report.summary(), file=sys.stderr)
    return 0


def tune_garbage_collector() -> None:
    """Collect the young generation after 20,000 net allocations rather than 700.

    Each AWS call builds thousands of short-lived dicts and lists, and fifty calls are in
    flight at once: at CPython's default the collector ran every few messages, each time
    over objects still in use, and took 6% of the worker's CPU in the bench's pipeline
    (0.9 s of 15 s for 3,000 messages; one collection in the run at 20,000). Almost all
    of those objects are freed by reference counting anyway; the collector is only for
    cycles, which now wait longer for it: a 100,000-message soak, and one of 30,000 with
    a 5xx on every fifth call, kept their RSS flat (bench/README.md)."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def warn_unknown_variables() -> None:
    """One warning naming the REGWORKER_* variables no setting reads (those of .env too:
    the CLI has loaded it into the environment). A warning, not a stop: the other
    commands' variables may share the environment."""
    unknown = unknown_variables(os.environ)
    if unknown:
        log.warning("unknown_settings", variables=unknown, note="no setting reads them: ignored")


OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def configure_tracing() -> Callable[[], None]:
    """With the ``otel`` extra installed and an OTLP endpoint in the standard ``OTEL_*``
    variables, export spans over OTLP/HTTP (service name, resource attributes and the
    exporter's own settings come from those variables too); otherwise traces stay
    no-ops. Returns what flushes the spans at exit."""
    if not any(os.environ.get(name) for name in OTLP_ENDPOINTS):
        return lambda: None
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return lambda: None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "tracing_off",
            why="OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra"
            " is not installed: pip install 'regworker[otel]'",
        )
        return lambda: None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "regworker")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("tracing_on", exporter="otlp/http")
    return provider.shutdown


class SignalHandling:
    """The first SIGTERM or SIGINT stops receiving and lets in-flight work finish, saying
    what it waits for; a second one stops at once, with the shell's exit code for the
    signal (130 after Ctrl-C, 143 after SIGTERM)."""

    def __init__(self) -> None:
        self.forced_exit_code = 128 + signal.SIGINT
        self._consumer: Consumer | None = None
        self._signalled = False  # not stop.is_set(): the worker also stops by itself

    async def run(self, settings: Settings, *, until_empty: bool) -> RunReport:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()

        def on_signal(signum: signal.Signals) -> None:
            if self._signalled and main_task is not None:
                log.warning("second_signal", signal=signum.name, action="stopping at once")
                self.forced_exit_code = 128 + signum
                main_task.cancel()
                return
            self._signalled = True
            stop.set()
            waiting = self._consumer.stop_report() if self._consumer else "the start-up check"
            log.info("stopping", signal=signum.name, waiting=waiting)
            print(
                f"regworker run: stopping ({signum.name}): {waiting};"
                " send it again to stop at once",
                file=sys.stderr,
            )

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        return await run_worker(settings, stop, until_empty=until_empty, on_consumer=self._remember)

    def _remember(self, consumer: Consumer) -> None:
        self._consumer = consumer

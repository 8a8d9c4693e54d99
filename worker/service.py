"""Assemble the worker from settings and run it until stopped or drained."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from dataclasses import dataclass

import structlog

from worker.clients import AwsClients, open_clients
from worker.consumer import Consumer, ReceiveLoopDied
from worker.dead_letter import DeadLetterQueue
from worker.flow_control import FlowController, Pacer
from worker.handler import Collaborators, MessageHandler, Tally
from worker.heartbeat import VisibilityHeartbeat
from worker.idempotency import IdempotencyStore
from worker.logs import configure_logging
from worker.pause import Pause
from worker.publisher import EventBridgePublisher, Publisher, SnsPublisher
from worker.resolver import Resolver
from worker.settings import Settings, SettingsError, load_settings
from worker.sqs import SourceQueue

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunReport:
    tally: Tally
    retries: int
    seconds: float

    def summary(self) -> str:
        outcomes = ", ".join(f"{k}={v}" for k, v in sorted(self.tally.outcomes.items()))
        letters = ", ".join(f"{k}={v}" for k, v in sorted(self.tally.dead_letters.items()))
        return (
            f"regworker: {outcomes or 'no messages'}; dead letters: {letters or 'none'};"
            f" resolve retries={self.retries}; {self.seconds:.1f}s"
        )


def build_publisher(settings: Settings, clients: AwsClients) -> Publisher:
    linger = settings.publish_linger_seconds
    if clients.sns is not None:
        return SnsPublisher(clients.sns, settings.topic_arn, linger=linger)
    if clients.events is None:
        raise RuntimeError("no sink client was opened")
    return EventBridgePublisher(
        clients.events, settings.event_bus_name, settings.event_source, linger=linger
    )


async def run_worker(
    settings: Settings, stop: asyncio.Event | None = None, *, until_empty: bool = False
) -> RunReport:
    stop = stop or asyncio.Event()
    started = time.monotonic()
    async with open_clients(settings) as clients:
        linger = settings.publish_linger_seconds
        queue = SourceQueue(clients.sqs, settings.queue_url, linger=linger)
        pacer = Pacer(
            FlowController(settings.resolve_rate_limit, start_rate=settings.resolve_start_rate)
        )
        parts = Collaborators(
            queue=queue,
            resolver=Resolver(
                clients.metering,
                pacer,
                retry_base=settings.retry_base_seconds,
                retry_max=settings.retry_max_seconds,
            ),
            pacer=pacer,
            publisher=build_publisher(settings, clients),
            dead_letters=DeadLetterQueue(clients.sqs, settings.dlq_url, linger=linger),
            heartbeat=VisibilityHeartbeat(queue, settings.visibility_timeout_seconds),
            pause=Pause(),
            idempotency=build_idempotency(settings, clients),
        )
        handler = MessageHandler(settings, parts)
        consumer = Consumer(settings, queue, handler, parts.heartbeat, parts.pause, pacer)
        log.info("worker_started", queue=settings.queue_url, sink=settings.sink.value)
        try:
            await consumer.run(stop, until_empty=until_empty)
        finally:
            await parts.publisher.close()
            await parts.dead_letters.close()
            await queue.close()
        report = RunReport(handler.tally, parts.resolver.retries, time.monotonic() - started)
        log.info(
            "worker_stopped",
            outcomes=dict(report.tally.outcomes),
            dead_letters=dict(report.tally.dead_letters),
            retries=report.retries,
            visibility_extensions=parts.heartbeat.extensions,
        )
        return report


def build_idempotency(settings: Settings, clients: AwsClients) -> IdempotencyStore | None:
    if clients.dynamodb is None:
        return None
    return IdempotencyStore(
        clients.dynamodb, settings.idempotency_table, ttl_seconds=settings.idempotency_ttl_seconds
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        description="Consume tokens from REGWORKER_QUEUE_URL, resolve them with ResolveCustomer,"
        " publish CustomerRegistered and dead-letter poison messages. Settings come from"
        " REGWORKER_* variables (and .env); AWS endpoints and credentials from the standard"
        " AWS variables.",
        epilog="examples:\n"
        "  regworker run\n"
        "  regworker run --until-empty   # stop once the queue is drained (batch jobs, tests)\n"
        "SIGTERM or SIGINT stops receiving and lets in-flight messages finish;"
        " a second signal cancels them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--until-empty", action="store_true", help="exit 0 once the queue is drained"
    )
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"regworker run: invalid settings: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        report = asyncio.run(_run_until_signalled(settings, until_empty=args.until_empty))
    except ReceiveLoopDied as error:
        log.error("worker_failed", error=str(error))
        return 1
    except asyncio.CancelledError:
        log.warning("worker_cancelled", note="in-flight messages come back after visibility")
        return 0
    print(report.summary(), file=sys.stderr)
    return 0


async def _run_until_signalled(settings: Settings, *, until_empty: bool) -> RunReport:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal(name: str) -> None:
        if stop.is_set() and main_task is not None:
            log.warning("second_signal", signal=name, action="cancelling in-flight work")
            main_task.cancel()
            return
        log.info("signal", signal=name, action="stop receiving, finish in-flight")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    return await run_worker(settings, stop, until_empty=until_empty)

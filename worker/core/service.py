"""Assemble the worker from settings and run it until stopped or drained."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import structlog

from worker.aws.clients import AwsClients, open_clients
from worker.aws.sqs import SourceQueue
from worker.core.consumer import Consumer
from worker.core.dead_letter import DeadLetterQueue
from worker.core.fault_hold import FaultHold
from worker.core.flow_control import FlowController, Pacer
from worker.core.handler import Collaborators, MessageHandler
from worker.core.health import Health, tick_loop
from worker.core.heartbeat import VisibilityHeartbeat
from worker.core.http_server import serve
from worker.core.idempotency import IdempotencyStore
from worker.core.metrics import Metrics, Watched
from worker.core.ports import ClaimStore
from worker.core.probes import Component, probes_for
from worker.core.progress import report_progress
from worker.core.publisher import EventBridgePublisher, Publisher, SnsPublisher
from worker.core.resolver import Resolver
from worker.core.settings import MetricsOutput, Settings
from worker.core.startup_check import StartupCheckFailed, check_startup
from worker.core.tally import Tally

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
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    until_empty: bool = False,
    on_consumer: Callable[[Consumer], None] | None = None,
    metrics: Metrics | None = None,
) -> RunReport:
    """Run until ``stop`` is set (or the queue is drained). Raises StartupCheckFailed
    before the first receive when a dependency is misconfigured (or the HTTP port is
    taken). ``on_consumer`` is given the consumer once it exists (the signal handler asks
    it what stopping waits for)."""
    metrics = metrics if metrics is not None else Metrics()
    metrics.build.info({"version": package_version()})
    health = Health(settings.liveness_seconds)
    with serving(settings, health, metrics):
        ticker = asyncio.create_task(tick_loop(health), name="loop-ticker")
        try:
            return await _run(
                settings, stop or asyncio.Event(), until_empty, on_consumer, metrics, health
            )
        finally:
            health.stopping()
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)


@contextlib.contextmanager
def serving(settings: Settings, health: Health, metrics: Metrics) -> Iterator[None]:
    """/metrics, /healthz and /readyz for the whole run, unless REGWORKER_HTTP_PORT=0."""
    if not settings.http_port:
        yield
        return
    exported = metrics.registry if settings.metrics is MetricsOutput.PROMETHEUS else None
    try:
        server = serve(health, exported, settings.http_host, settings.http_port)
    except OSError as error:
        raise StartupCheckFailed(
            f"REGWORKER_HTTP_PORT: cannot listen on {settings.http_host}:{settings.http_port}:"
            f" {error.strerror or error}"
        ) from None
    log.info("http_serving", host=settings.http_host, port=server.port)
    try:
        yield
    finally:
        server.close()


@dataclass(frozen=True)
class Assembled:
    """One worker's parts, built from its clients."""

    consumer: Consumer
    handler: MessageHandler
    parts: Collaborators
    queue: SourceQueue
    watched: Watched

    async def close(self) -> None:
        """Send what the batchers hold and stop the fault hold's probes."""
        await self.parts.hold.close()
        await self.parts.publisher.close()
        await self.parts.dead_letters.close()
        await self.queue.close()


def assemble(
    settings: Settings,
    clients: AwsClients,
    hold: FaultHold,
    tally: Tally,
    health: Health | None = None,
) -> Assembled:
    """The consumer and its collaborators around ``clients`` (bench/own_cost.py builds
    the same worker around stand-in clients)."""
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
            tally=tally,
        ),
        pacer=pacer,
        publisher=build_publisher(settings, clients),
        dead_letters=DeadLetterQueue(clients.sqs, settings.dlq_url, linger=linger),
        heartbeat=VisibilityHeartbeat(queue, settings.visibility_timeout_seconds),
        hold=hold,
        idempotency=build_idempotency(settings, clients),
        tally=tally,
    )
    handler = MessageHandler(settings, parts)
    consumer = Consumer(settings, queue, handler, parts.heartbeat, hold, pacer, health)
    watched = Watched(tally, parts.heartbeat, hold, pacer.controller)
    return Assembled(consumer, handler, parts, queue, watched)


async def _run(
    settings: Settings,
    stop: asyncio.Event,
    until_empty: bool,
    on_consumer: Callable[[Consumer], None] | None,
    metrics: Metrics,
    health: Health,
) -> RunReport:
    started = time.monotonic()
    async with open_clients(settings) as clients:
        probes = probes_for(settings, clients)
        if not await until_stopped(check_startup(settings, probes, endpoints(clients)), stop):
            log.info("stopped_during_start_up")
            return RunReport(Tally(), 0, time.monotonic() - started)
        hold = FaultHold(probes, max_wait=settings.fault_probe_max_seconds)
        worker = assemble(settings, clients, hold, Tally(metrics=metrics), health)
        metrics.watch(worker.watched)
        health.clients_built(hold)
        if on_consumer is not None:
            on_consumer(worker.consumer)
        log.info("worker_started", queue=settings.queue_url, sink=settings.sink.value)
        leases = keep_leases(settings, worker.parts.idempotency)
        progress = start_progress(settings, worker.watched)
        try:
            await worker.consumer.run(stop, until_empty=until_empty)
        finally:
            for task in (leases, progress):
                task.cancel()
            await asyncio.gather(leases, progress, return_exceptions=True)
            await worker.close()
        tally, heartbeat = worker.handler.tally, worker.parts.heartbeat
        report = RunReport(tally, worker.parts.resolver.retries, time.monotonic() - started)
        log.info(
            "worker_stopped",
            outcomes=dict(tally.outcomes),
            dead_letters=dict(tally.dead_letters),
            retries=report.retries,
            visibility_extensions=heartbeat.extensions,
            fault_holds=hold.holds,
        )
        return report


def start_progress(settings: Settings, watched: Watched) -> asyncio.Task[None]:
    """The progress line (and EMF documents) every REGWORKER_PROGRESS_LOG_SECONDS."""
    interval = settings.progress_log_seconds
    if not interval:
        return asyncio.create_task(asyncio.sleep(0), name="progress-off")
    emf_queue = (
        settings.queue_url.rsplit("/", 1)[-1] if settings.metrics is MetricsOutput.EMF else None
    )
    return asyncio.create_task(
        report_progress(watched, interval, emf_queue=emf_queue), name="progress"
    )


def package_version() -> str:
    try:
        return metadata.version("regworker")
    except metadata.PackageNotFoundError:  # a checkout that is not installed
        return "unknown"


async def until_stopped(step: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``step`` unless ``stop`` comes first; True when it ran to the end."""
    running = asyncio.ensure_future(step)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for task in (running, stopping):
        task.cancel()
    await asyncio.gather(stopping, return_exceptions=True)
    if running.cancelled() or not running.done():
        await asyncio.gather(running, return_exceptions=True)
        return False
    running.result()  # raises what the step raised (StartupCheckFailed)
    return True


def endpoints(clients: AwsClients) -> dict[Component, str]:
    sink = clients.sns or clients.events
    found = {
        Component.SOURCE_QUEUE: clients.sqs.meta.endpoint_url,
        Component.DEAD_LETTER_QUEUE: clients.sqs.meta.endpoint_url,
        Component.RESOLVE_CUSTOMER: clients.metering.meta.endpoint_url,
    }
    if sink is not None:
        found[Component.SINK] = sink.meta.endpoint_url
    if clients.dynamodb is not None:
        found[Component.IDEMPOTENCY_TABLE] = clients.dynamodb.meta.endpoint_url
    return found


def keep_leases(settings: Settings, store: ClaimStore | None) -> asyncio.Task[None]:
    """Renew idempotency leases at the heartbeat's pace while messages are in hand."""
    interval = max(0.5, settings.visibility_timeout_seconds / 5)
    if store is None:
        return asyncio.create_task(asyncio.sleep(0), name="no-leases")
    return asyncio.create_task(store.run(interval), name="idempotency-leases")


def build_idempotency(settings: Settings, clients: AwsClients) -> IdempotencyStore | None:
    if clients.dynamodb is None:
        return None
    return IdempotencyStore(
        clients.dynamodb, settings.idempotency_table, ttl_seconds=settings.idempotency_ttl_seconds
    )

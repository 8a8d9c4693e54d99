"""Local emulator of the AWS Marketplace Metering ``ResolveCustomer`` API.

It speaks the real wire protocol (awsJson1.1: ``POST /`` with an ``X-Amz-Target``
header), so boto3, aiobotocore and the AWS CLI work against it unchanged when given
``--endpoint-url``. SigV4 signatures are not checked. What a call answers depends on
the token (see ``decide``) and on service-wide knobs (latency, a TPS cap, a fault
rate, a timed fault switch). Raw tokens never reach stats or logs: only a
12-hex-char sha256 prefix does.

Side endpoints: ``GET /_emulator/health``, ``GET /_emulator/stats``,
``POST /_emulator/reset`` (counters, per-token state and the fault switch) and the
fault switch ``/_emulator/faults``: ``POST`` with ``{"code": "UnrecognizedClientException",
"seconds": 600}`` makes every ResolveCustomer call answer that error until ``seconds``
have passed on the emulator's monotonic clock (codes: ``FAULT_CODES``; a new ``POST``
replaces the fault), ``GET`` shows it and the seconds left, ``DELETE`` clears it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web

DEFAULT_PRODUCT_CODE = "regworkeremulator00000001"
DEFAULT_PORT = 8642
TARGET = "AWSMPMeteringService.ResolveCustomer"
CONTENT_TYPE = "application/x-amz-json-1.1"
SUCCESS = "success"
# Distinct token prefixes kept in stats; bounds memory during long benchmarks.
MAX_TRACKED_TOKENS = 100_000
# Longest fault the switch accepts: one day.
MAX_FAULT_SECONDS = 86_400


class ErrorCode(StrEnum):
    """The ``__type`` of every error the emulator answers (the first five are modelled)."""

    INVALID = "InvalidTokenException"
    EXPIRED = "ExpiredTokenException"
    DISABLED = "DisabledApiException"
    THROTTLING = "ThrottlingException"
    INTERNAL_ERROR = "InternalServiceErrorException"
    UNRECOGNIZED_CLIENT = "UnrecognizedClientException"
    ACCESS_DENIED = "AccessDeniedException"
    UNKNOWN_OPERATION = "UnknownOperationException"
    VALIDATION = "ValidationException"
    SERIALIZATION = "SerializationException"


_ERRORS: Mapping[ErrorCode, tuple[int, str]] = {
    ErrorCode.INVALID: (400, "Registration token is invalid."),
    ErrorCode.EXPIRED: (400, "Registration token has expired."),
    ErrorCode.DISABLED: (400, "The API is disabled in the Region."),
    ErrorCode.THROTTLING: (400, "Rate exceeded."),
    ErrorCode.INTERNAL_ERROR: (500, "An internal error has occurred. Retry your request."),
    ErrorCode.UNRECOGNIZED_CLIENT: (400, "The security token included in the request is invalid."),
    ErrorCode.ACCESS_DENIED: (400, "User is not authorized to perform this action."),
    ErrorCode.UNKNOWN_OPERATION: (400, "Unknown operation."),
    ErrorCode.VALIDATION: (400, "Invalid request."),
    ErrorCode.SERIALIZATION: (400, "Request body is not valid JSON."),
}
# What the fault switch accepts: errors that can hit every call, whatever its token.
FAULT_CODES: tuple[ErrorCode, ...] = (
    ErrorCode.UNRECOGNIZED_CLIENT,
    ErrorCode.ACCESS_DENIED,
    ErrorCode.INTERNAL_ERROR,
    ErrorCode.THROTTLING,
    ErrorCode.DISABLED,
)
_TERMINAL_PREFIXES: Mapping[str, ErrorCode] = {
    "invalid-": ErrorCode.INVALID,
    "expired-": ErrorCode.EXPIRED,
    "disabled-": ErrorCode.DISABLED,
}
# At most 9 digits: a bounded int, and longer runs are just ordinary tokens.
_COUNTED = re.compile(r"(throttle|error)-(\d{1,9})(?:-|$)")
_SLOW = re.compile(r"slow-(\d{1,9})(?:-|$)")
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9+/=_.-]+")
_PRODUCT = re.compile(r"product-([^-]+)(?:-|$)")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

log = logging.getLogger(__name__)


class InvalidOption(ValueError):
    """A configuration value out of range; ``option`` is the CLI flag it came from."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        super().__init__(f"invalid --{option}: {value!r} ({reason})")
        self.option = option


@dataclass(frozen=True)
class EmulatorConfig:
    product_code: str = DEFAULT_PRODUCT_CODE
    latency_ms: int = 0
    tps: float = 0.0
    fault_rate: float = 0.0
    seed: int = 0
    reject_access_keys: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.product_code:
            raise InvalidOption("product-code", self.product_code, "must not be empty")
        if self.latency_ms < 0:
            raise InvalidOption("latency-ms", self.latency_ms, "must be >= 0")
        if not (math.isfinite(self.tps) and self.tps >= 0):
            raise InvalidOption("tps", self.tps, "must be >= 0, 0 means unlimited")
        if not 0.0 <= self.fault_rate <= 1.0:  # also rejects NaN
            raise InvalidOption("fault-rate", self.fault_rate, "must be within 0..1")


@dataclass(frozen=True)
class Answer:
    """What one call answers: HTTP status, JSON body, and extra delay before answering."""

    status: int
    body: Mapping[str, str]
    label: str
    delay_s: float = 0.0


def error_answer(name: ErrorCode, message: str | None = None) -> Answer:
    status, default_message = _ERRORS[name]
    return Answer(status, {"__type": name, "message": message or default_message}, name)


@dataclass(frozen=True)
class Fault:
    """A service-wide fault set through ``POST /_emulator/faults``: every call answers
    ``code`` until ``until`` on the monotonic clock."""

    code: ErrorCode
    seconds: float
    until: float

    def as_json(self, now: float) -> dict[str, Any]:
        status, message = _ERRORS[self.code]
        return {
            "code": self.code.value,
            "status": status,
            "message": message,
            "seconds": self.seconds,
            "seconds_left": round(max(0.0, self.until - now), 3),
        }


class InvalidFault(ValueError):
    """A ``POST /_emulator/faults`` body the switch refuses."""


def parse_fault(raw: bytes, now: float) -> Fault:
    """The fault a ``POST /_emulator/faults`` body asks for; raises InvalidFault."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidFault("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidFault('body must be a JSON object: {"code": ..., "seconds": ...}')
    unknown = sorted(set(body) - {"code", "seconds"})
    if unknown:
        raise InvalidFault(f"unknown fields {unknown}; allowed: code, seconds")
    allowed = ", ".join(FAULT_CODES)
    code = body.get("code")
    if not isinstance(code, str) or code not in FAULT_CODES:
        raise InvalidFault(f"code must be one of {allowed}, not {code!r}")
    seconds = body.get("seconds")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not (math.isfinite(seconds) and 0 < seconds <= MAX_FAULT_SECONDS)
    ):
        raise InvalidFault(
            f"seconds must be a number above 0 and at most {MAX_FAULT_SECONDS}, not {seconds!r}"
        )
    return Fault(ErrorCode(code), seconds, now + seconds)


@dataclass
class TokenBucket:
    rate: float
    capacity: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, tps: float, now: float) -> TokenBucket:
        capacity = max(1.0, tps)
        return cls(rate=tps, capacity=capacity, tokens=capacity, updated=now)

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class Stats:
    calls: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_token: Counter[str] = field(default_factory=Counter)

    def record(self, label: str, token: str | None) -> None:
        self.calls += 1
        self.by_outcome[label] += 1
        if token is None:
            return
        key = token_fingerprint(token)
        if key in self.by_token or len(self.by_token) < MAX_TRACKED_TOKENS:
            self.by_token[key] += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "by_outcome": dict(self.by_outcome),
            "by_token_sha256_prefix": dict(self.by_token),
        }


@dataclass
class EmulatorState:
    """Everything that changes between calls; ``reset`` restores the start state."""

    config: EmulatorConfig
    attempts: Counter[str] = field(default_factory=Counter)
    stats: Stats = field(default_factory=Stats)
    rng: random.Random = field(init=False)
    bucket: TokenBucket | None = field(init=False)
    fault: Fault | None = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self, now: float | None = None) -> None:
        self.attempts.clear()
        self.stats = Stats()
        self.fault = None
        self.rng = random.Random(self.config.seed)  # noqa: S311 - fault injection, not crypto
        started = time.monotonic() if now is None else now
        self.bucket = TokenBucket.full(self.config.tps, started) if self.config.tps else None

    def active_fault(self, now: float) -> Fault | None:
        """The fault switch's fault if it still holds at ``now``; an expired one is cleared."""
        if self.fault is not None and now >= self.fault.until:
            self.fault = None
        return self.fault

    def fault_answer(self, now: float) -> Answer | None:
        fault = self.active_fault(now)
        return error_answer(fault.code) if fault is not None else None


def _digest(token: str, purpose: bytes) -> bytes:
    # surrogatepass: JSON can carry lone surrogates, which plain UTF-8 refuses.
    return hashlib.sha256(purpose + token.encode("utf-8", "surrogatepass")).digest()


def token_fingerprint(token: str) -> str:
    """The 12-hex-char sha256 prefix that identifies a token in stats and logs."""
    return _digest(token, b"").hex()[:12]


def _base62(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, index = divmod(number, 62)
        chars.append(_BASE62[index])
    return "".join(chars)


def derive_customer(token: str, product_code: str) -> dict[str, str]:
    """The ResolveCustomer answer for a token: a pure function of the token."""
    digest = _digest(token, b"")
    account = str(int.from_bytes(digest[10:16], "big") % 10**12).zfill(12)
    license_id = _digest(token, b"license:").hex()[:32]
    return {
        "CustomerIdentifier": _base62(int.from_bytes(digest[:10], "big"), 13),
        "ProductCode": product_code,
        "CustomerAWSAccountId": account,
        "LicenseArn": f"arn:aws:license-manager::{account}:license:l-{license_id}",
    }


def decide(token: str, state: EmulatorState) -> Answer:
    """Per-token rules. Only ``throttle-``/``error-`` tokens touch state (a call count)."""
    for prefix, error in _TERMINAL_PREFIXES.items():
        if token.startswith(prefix):
            return error_answer(error)
    if not _TOKEN_ALPHABET.fullmatch(token):
        # Real tokens are base64-like; AWS answers anything else as an invalid token.
        return error_answer(ErrorCode.INVALID)
    if counted := _COUNTED.match(token):
        key = _digest(token, b"").hex()
        state.attempts[key] += 1
        if state.attempts[key] <= int(counted[2]):
            return error_answer(
                ErrorCode.THROTTLING if counted[1] == "throttle" else ErrorCode.INTERNAL_ERROR
            )
    product = _PRODUCT.match(token)
    customer = derive_customer(token, product[1] if product else state.config.product_code)
    slow = _SLOW.match(token)
    return Answer(200, customer, SUCCESS, delay_s=int(slow[1]) / 1000 if slow else 0.0)


def service_gate(state: EmulatorState, now: float) -> Answer | None:
    """Service-wide knobs (fault switch, TPS cap, fault rate), applied in that order
    before the per-token rules. An active fault takes nothing from the TPS bucket."""
    if faulted := state.fault_answer(now):
        return faulted
    if state.bucket is not None and not state.bucket.take(now):
        return error_answer(ErrorCode.THROTTLING)
    if state.config.fault_rate > 0 and state.rng.random() < state.config.fault_rate:
        return error_answer(ErrorCode.INTERNAL_ERROR)
    return None


def resolve(token: str, state: EmulatorState, now: float) -> Answer:
    return service_gate(state, now) or decide(token, state)


def _rejected_access_key(request: web.Request, config: EmulatorConfig) -> bool:
    found = _CREDENTIAL.search(request.headers.get("Authorization", ""))
    return found is not None and found[1] in config.reject_access_keys


def _parse_token(raw: bytes) -> str | Answer:
    try:
        body = json.loads(raw)
    except ValueError:
        return error_answer(ErrorCode.SERIALIZATION)
    token = body.get("RegistrationToken") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        return error_answer(
            ErrorCode.VALIDATION,
            "1 validation error detected: Value at 'registrationToken' failed to satisfy "
            "constraint: Member must be a non-empty string",
        )
    return token


def _respond(answer: Answer) -> web.Response:
    return web.Response(
        status=answer.status,
        body=json.dumps(answer.body).encode(),
        headers={"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": str(uuid.uuid4())},
    )


STATE_KEY = web.AppKey("emulator_state", EmulatorState)


async def _handle_api(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    token: str | None = None
    target = request.headers.get("X-Amz-Target", "")
    if _rejected_access_key(request, state.config):
        answer = error_answer(ErrorCode.UNRECOGNIZED_CLIENT)
    elif target != TARGET:
        answer = error_answer(ErrorCode.UNKNOWN_OPERATION, f"Unknown operation {target[:100]!r}.")
    else:
        parsed = _parse_token(await request.read())
        now = time.monotonic()
        if isinstance(parsed, Answer):
            # The fault switch gates every call, even one whose body is malformed.
            answer = state.fault_answer(now) or parsed
        else:
            token = parsed
            answer = resolve(token, state, now)
    state.stats.record(answer.label, token)
    log.debug(
        "resolve_customer answer=%s status=%d token_sha256=%s",
        answer.label,
        answer.status,
        token_fingerprint(token) if token is not None else "-",
    )
    delay = state.config.latency_ms / 1000 + answer.delay_s
    if delay > 0:
        await asyncio.sleep(delay)
    return _respond(answer)


async def _handle_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].stats.as_json())


async def _handle_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"status": "reset"})


def _fault_answer(state: EmulatorState, now: float) -> web.Response:
    fault = state.active_fault(now)
    return web.json_response({"fault": fault.as_json(now) if fault is not None else None})


async def _handle_set_fault(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    now = time.monotonic()
    try:
        fault = parse_fault(await request.read(), now)
    except InvalidFault as exc:
        return web.json_response({"error": "InvalidFault", "message": str(exc)}, status=400)
    state.fault = fault
    log.info("fault set code=%s seconds=%s", fault.code, fault.seconds)
    return _fault_answer(state, now)


async def _handle_get_fault(request: web.Request) -> web.Response:
    return _fault_answer(request.app[STATE_KEY], time.monotonic())


async def _handle_clear_fault(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.fault = None
    log.info("fault cleared")
    return _fault_answer(state, time.monotonic())


async def _handle_health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(config: EmulatorConfig) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = EmulatorState(config)
    app.router.add_post("/", _handle_api)
    app.router.add_get("/_emulator/stats", _handle_stats)
    app.router.add_post("/_emulator/reset", _handle_reset)
    app.router.add_get("/_emulator/health", _handle_health)
    app.router.add_post("/_emulator/faults", _handle_set_fault)
    app.router.add_get("/_emulator/faults", _handle_get_fault)
    app.router.add_delete("/_emulator/faults", _handle_clear_fault)
    return app


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Start the emulator in the current event loop; yields its base URL (http://host:port)
    with the real bound port."""
    # A short shutdown timeout: a pending slow- call must not hold up exit for a minute.
    runner = web.AppRunner(build_app(config), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        yield _base_url(host, bound_port)
    finally:
        await runner.cleanup()


async def serve(config: EmulatorConfig, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, after printing "emulator listening on URL"."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running_emulator(config, host, port) as url:
        print(f"emulator listening on {url}", flush=True)
        await stop.wait()

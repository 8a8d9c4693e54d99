"""Reference landing page for AWS Marketplace SaaS registrations, on aiohttp.web.

When a buyer chooses "Set up your account", AWS Marketplace makes the buyer's browser
POST a form with ``x-amzn-marketplace-token`` (and ``x-amzn-marketplace-offer-type`` for
free trials) to the seller's registration URL. This app puts the token on the
registration queue and answers ``303 See Other`` to a "we are setting up your account"
page at once: the worker resolves the token a moment later, so the buyer never waits on
ResolveCustomer, whatever the worker is doing.

- form without a token, or a token that can never resolve: 400, a short HTML page;
- the queue cannot be reached: 503 with ``Retry-After`` and a page whose button posts
  the same form again, plus one log line naming the token by its sha256 prefix only.

Every response carries ``Cache-Control: no-store``: the 503 page holds the token, and
the others answer a POST that carried one, so no browser or proxy keeps a copy.

aiohttp.web rather than a bare ASGI app: it is already a dependency of the worker (the
emulator uses it), it brings its own production HTTP server (a bare ASGI app would need
uvicorn or similar added to run at all, and to be tested over a real socket), and its
``cleanup_ctx`` opens the SQS client once at startup and closes it at shutdown.

Run it::

    REGWORKER_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/123456789012/registrations \\
        python -m examples.landing --port 8080 --welcome-url /welcome
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

from aiohttp import web

from worker.core.events import token_ref
from worker.core.request import MAX_BODY_LENGTH, OFFER_TYPE_FIELD, TOKEN_FIELD
from worker.ops.enqueue import (
    AsyncEnqueuer,
    EnqueueFailed,
    InvalidRequest,
    MissingToken,
    form_fields,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
RETRY_AFTER_SECONDS: Final = 5
ENQUEUER: Final = web.AppKey("enqueuer", AsyncEnqueuer)

log = logging.getLogger("examples.landing")


@dataclass(frozen=True)
class LandingConfig:
    queue_url: str
    welcome_url: str = "/welcome"  # where buyers go once the token is queued
    region: str | None = None


def create_app(config: LandingConfig, sqs_client: SQSClient | None = None) -> web.Application:
    """The landing app. Without ``sqs_client`` it opens its own at startup (endpoints and
    credentials from the standard AWS variables) and keeps it open until shutdown."""
    app = web.Application(client_max_size=MAX_BODY_LENGTH)

    async def enqueuer_for_app_life(app: web.Application) -> AsyncIterator[None]:
        async with AsyncEnqueuer(config.queue_url, sqs_client, config.region) as enqueuer:
            app[ENQUEUER] = enqueuer
            yield

    async def register_buyer(request: web.Request) -> web.StreamResponse:
        return await _register_buyer(request, config)

    app.cleanup_ctx.append(enqueuer_for_app_life)
    app.on_response_prepare.append(_no_store)
    app.router.add_post("/", register_buyer)
    app.router.add_get("/welcome", welcome)
    return app


async def _register_buyer(request: web.Request, config: LandingConfig) -> web.StreamResponse:
    received_at = datetime.now(UTC)
    correlation_id = uuid.uuid4().hex
    if request.content_type != FORM_CONTENT_TYPE:
        return _page(415, "Unsupported form", f"<p>Post the form as {FORM_CONTENT_TYPE}.</p>")
    try:
        token, offer_type = form_fields(await request.read())
    except MissingToken:
        return _page(400, "Registration link incomplete", _START_AGAIN)
    except InvalidRequest as error:
        return _rejected(correlation_id, error)
    started = time.monotonic()
    try:
        message_id = await request.app[ENQUEUER].enqueue(
            token, offer_type, correlation_id=correlation_id, received_at=received_at
        )
    except InvalidRequest as error:  # a token the worker could never resolve
        return _rejected(correlation_id, error)
    except EnqueueFailed as error:
        log.warning(
            "enqueue failed correlation_id=%s token_sha256=%s reason=%s",
            correlation_id,
            token_ref(token),
            error,
        )
        return _retry_page(request.path, token, offer_type)
    log.info(
        "registration queued correlation_id=%s token_sha256=%s message_id=%s ms=%.1f",
        correlation_id,
        token_ref(token),
        message_id,
        (time.monotonic() - started) * 1000,
    )
    raise web.HTTPSeeOther(_with_query(config.welcome_url, correlation_id=correlation_id))


async def welcome(request: web.Request) -> web.StreamResponse:
    reference = html.escape(request.query.get("correlation_id", ""))
    return _page(
        200,
        "We are setting up your account",
        "<p>Thank you for subscribing. Your account will be ready in a moment; we will"
        f" email you when it is.</p><p>Reference: <code>{reference}</code></p>",
    )


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, aiohttp's own (413, 405, ...) and redirects included: the
    simplest way to be sure that none made from a token is ever missed."""
    response.headers["Cache-Control"] = "no-store"


_START_AGAIN: Final = (
    "<p>Please go back to AWS Marketplace and choose <em>Set up your account</em> again.</p>"
)


def _rejected(correlation_id: str, error: InvalidRequest) -> web.Response:
    log.info("rejected registration correlation_id=%s reason=%s", correlation_id, error)
    return _page(400, "Registration link not valid", _START_AGAIN)


def _retry_page(action: str, token: str, offer_type: str | None) -> web.Response:
    """503 with a button that posts the same form again. The token goes back only to the
    browser that sent it, escaped; it is never logged."""
    fields = [(TOKEN_FIELD, token)] + ([(OFFER_TYPE_FIELD, offer_type)] if offer_type else [])
    inputs = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value, quote=True)}">'
        for name, value in fields
    )
    response = _page(
        503,
        "Please try again",
        "<p>We could not start setting up your account just now.</p>"
        f'<form method="post" action="{html.escape(action, quote=True)}">{inputs}'
        '<button type="submit">Try again</button></form>',
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _page(status: int, title: str, body_html: str) -> web.Response:
    text = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{body_html}</body></html>"
    )
    return web.Response(status=status, text=text, content_type="text/html")


def _with_query(url: str, **params: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}{urlencode(params)}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Reference AWS Marketplace landing page.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--welcome-url", default="/welcome")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION"))
    args = parser.parse_args()
    queue_url = os.environ.get("REGWORKER_QUEUE_URL", "")
    if not queue_url:
        parser.error("set REGWORKER_QUEUE_URL to the registration queue's URL")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = LandingConfig(queue_url, welcome_url=args.welcome_url, region=args.region)
    web.run_app(create_app(config), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

"""AWS Marketplace registration worker: SQS -> ResolveCustomer -> CustomerRegistered.

The public API, for the web tier and for code that reads the product's messages:

- ``Enqueuer`` / ``AsyncEnqueuer``: put a registration token on the queue (one call);
  ``InvalidRequest`` (answer 400), ``MissingToken``, ``EnqueueFailed`` (answer 503);
  ``form_fields`` reads the browser's form body.
- ``parse_body``, ``RegistrationRequest``: read a queued registration request.
- ``token_ref``: the short hash a token is logged and published as.

Names are imported on first use (PEP 562), so ``import worker`` costs nothing and
``regworker run`` loads no tool it does not run.

Layout (``tests/core/test_layout.py`` keeps it): ``worker.core`` the service,
``worker.aws`` the AWS wire layer, ``worker.ops`` the operator and web-tier tools,
``worker.local`` the local stand-ins, ``worker.cli`` the command line. ``core`` imports
nothing from ``ops``, ``local`` or ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from worker.core.events import token_ref
    from worker.core.request import RegistrationRequest, parse_body
    from worker.ops.enqueue import (
        AsyncEnqueuer,
        EnqueueFailed,
        Enqueuer,
        InvalidRequest,
        MissingToken,
        form_fields,
    )

_HOMES: Final = {
    "AsyncEnqueuer": "worker.ops.enqueue",
    "Enqueuer": "worker.ops.enqueue",
    "EnqueueFailed": "worker.ops.enqueue",
    "InvalidRequest": "worker.ops.enqueue",
    "MissingToken": "worker.ops.enqueue",
    "form_fields": "worker.ops.enqueue",
    "RegistrationRequest": "worker.core.request",
    "parse_body": "worker.core.request",
    "token_ref": "worker.core.events",
}

__all__ = [
    "AsyncEnqueuer",
    "EnqueueFailed",
    "Enqueuer",
    "InvalidRequest",
    "MissingToken",
    "RegistrationRequest",
    "form_fields",
    "parse_body",
    "token_ref",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted(__all__)

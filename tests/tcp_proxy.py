"""The TCP proxy the resilience tests cut and restore. It lives in worker.local.sandbox, beside
the other local stand-ins, so that bench/outage.py can use it too (through
``worker.local.sandbox.threaded_proxy``); this module keeps the tests' imports."""

from __future__ import annotations

from worker.local.sandbox import FlakyProxy, flaky_proxy

__all__ = ["FlakyProxy", "flaky_proxy"]

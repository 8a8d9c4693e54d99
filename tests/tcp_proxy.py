"""The TCP proxy the resilience tests cut and restore. It lives in worker.sandbox, beside
the other local stand-ins, so that bench/outage.py can use it too (through
``worker.sandbox.threaded_proxy``); this module keeps the tests' imports."""

from __future__ import annotations

from worker.sandbox import FlakyProxy, flaky_proxy

__all__ = ["FlakyProxy", "flaky_proxy"]

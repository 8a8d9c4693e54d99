"""The service: settings, the consumer and handler, resolving with flow control, publishing,
dead-lettering, idempotency, heartbeats and fault holds. It imports nothing from
``worker.ops``, ``worker.local`` or ``worker.cli`` (``tests/core/test_layout.py`` checks)."""

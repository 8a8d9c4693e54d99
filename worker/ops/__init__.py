"""Operator tools: the dead-letter queue, provisioning, enqueueing and resolve-customer."""

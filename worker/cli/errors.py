"""What every command line tool raises for bad arguments or input."""

from __future__ import annotations


class UsageError(Exception):
    """Bad arguments or input: the command prints the message on one line and exits 2."""

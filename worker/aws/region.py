"""The one region rule, for the worker and every tool.

In order: the command's ``--region``, ``REGWORKER_AWS_REGION``, ``AWS_REGION`` (what ECS
and Lambda set), ``AWS_DEFAULT_REGION`` (what botocore reads), the AWS config profile's
region, then ``us-east-1``: the SaaS metering APIs, ResolveCustomer among them, are
served there, so a worker with no region set still reaches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import botocore.session

DEFAULT_REGION: Final = "us-east-1"
REGION_VARIABLES: Final = ("REGWORKER_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")


def profile_region() -> str:
    """The AWS config profile's region, else ``DEFAULT_REGION``."""
    region = botocore.session.Session().get_config_variable("region")
    return str(region) if region else DEFAULT_REGION


def region_from(environ: Mapping[str, str], explicit: str | None = None) -> str:
    """The region by the rule above; ``environ`` is the process environment (or a test's)."""
    for value in (explicit, *(environ.get(name) for name in REGION_VARIABLES)):
        if value:
            return value
    return profile_region()

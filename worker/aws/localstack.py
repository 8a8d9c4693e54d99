"""A boto3 session aimed at LocalStack, for every tool's ``--localstack``.

localstack-client reads ``LOCALSTACK_HOST`` (default ``localhost:4566``) and builds the
same clients as boto3; it comes with the ``local`` extra, so it is imported on use.
"""

from __future__ import annotations

from typing import Final, cast

import boto3

LOCALSTACK_CREDENTIALS: Final = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


class LocalStackClientMissing(ImportError):
    """``--localstack`` without the ``local`` extra installed."""


def localstack_session(region: str) -> boto3.Session:
    try:
        from localstack_client.session import Session as LocalStackSession
    except ImportError:
        raise LocalStackClientMissing(
            "--localstack needs the 'local' extra: pip install 'regworker[local]'"
        ) from None
    # Not a boto3.Session, but it builds the same clients through the same client().
    session = LocalStackSession(
        aws_access_key_id=LOCALSTACK_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCALSTACK_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=region,
    )
    return cast(boto3.Session, session)

"""The benches' own environment: local services only, and nothing else lost."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from worker.local.sandbox import use_clean_environ


@pytest.fixture
def restored_environ() -> Iterator[None]:
    """The whole environment back afterwards: the call under test clears it."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.usefixtures("restored_environ")
def test_a_clean_environ_drops_aws_and_worker_settings_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It used to be cleared before it was read: the benches' children ran with no
    PATH, HOME or PYTHONPATH at all."""
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("REGWORKER_QUEUE_URL", "https://sqs.example/queue")
    monkeypatch.setenv("PYTHONPATH", "/opt/site")
    path = os.environ["PATH"]
    use_clean_environ(AWS_ENDPOINT_URL="http://127.0.0.1:4566")
    assert "AWS_PROFILE" not in os.environ
    assert "REGWORKER_QUEUE_URL" not in os.environ
    assert os.environ["PYTHONPATH"] == "/opt/site"
    assert os.environ["PATH"] == path
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"

"""The README is the operators' manual: it must name every setting and schema."""

from __future__ import annotations

import re
from pathlib import Path

from worker.core.metrics import Metrics
from worker.core.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_lists_every_setting() -> None:
    missing = [
        ENV_PREFIX + name.upper()
        for name in Settings.model_fields
        if f"`{ENV_PREFIX}{name.upper()}`" not in README
    ]
    assert missing == []


def test_readme_points_at_every_schema() -> None:
    schemas = sorted(p.name for p in (ROOT / "schemas").glob("*.schema.json"))
    assert len(schemas) >= 3
    assert [s for s in schemas if f"schemas/{s}" not in README] == []


def test_readme_gives_the_two_commands() -> None:
    assert "`make demo`" in README
    assert "`make test`" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_documents_every_metric() -> None:
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in Metrics().names()}
    documented = {name for name in families if f"`{name}" in README}
    assert families - documented == set()

"""The package's layers: the service core imports no tool, stand-in or CLI code; the
AWS wire layer imports no tool either; ``regworker run`` loads only what it runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import worker

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("worker.ops", "worker.local", "worker.cli")
# What each layer may not import, and why: the core is the service; the wire layer
# serves the core and the tools alike; the stand-ins and tools never reach the CLI.
FORBIDDEN = {
    "core": TOOLS,
    "aws": TOOLS,
    "ops": ("worker.local", "worker.cli"),
    "local": ("worker.cli",),
}


def imports(path: Path) -> set[str]:
    """Every module this file imports, at run time or for typing alike."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def worker_imports(path: Path) -> set[str]:
    """Every ``worker.*`` module this file imports."""
    return {name for name in imports(path) if name == "worker" or name.startswith("worker.")}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_only_the_command_line_draws_or_parses_arguments(layer: str) -> None:
    """click and rich belong to worker/cli: the ops layer reports progress through
    callbacks (``Replayer``'s ``on_progress``) and returns data, the CLI draws it."""
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "worker" / layer).rglob("*.py"))
        for name in imports(path)
        if name.split(".")[0] in {"click", "rich", "argparse"}
    }
    assert not offending


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    paths = sorted((ROOT / "worker" / layer).rglob("*.py"))
    assert paths, layer
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in paths
        for name in worker_imports(path)
        if name.startswith(FORBIDDEN[layer]) or name == "worker"
    }
    assert not offending


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text("from worker.ops.dlq import peek\nimport worker.cli\n")
    assert worker_imports(source) == {"worker.ops.dlq", "worker.cli"}


def test_the_public_api_resolves_every_name() -> None:
    for name in worker.__all__:
        assert getattr(worker, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = worker.nothing


def test_importing_the_package_loads_no_tool() -> None:
    probe = "import sys, worker; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [
        name
        for name in loaded
        if name.startswith(("worker.", "boto3", "aiobotocore", "click", "rich"))
    ]

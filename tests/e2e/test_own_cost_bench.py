"""bench/own_cost.py runs the worker as assembled for production around stand-in
clients: a worker that starts calling a client method the stand-ins lack, or stops
publishing, breaks the bench before anyone reruns it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_own_cost_bench_runs_both_contenders_to_the_end(tmp_path: Path) -> None:
    out = tmp_path / "own.json"
    logs = tmp_path / "worker.log"
    command = [sys.executable, "bench/own_cost.py", "--rounds", "1", "--messages", "400"]
    finished = subprocess.run(
        [*command, "--json-out", str(out), "--log-file", str(logs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    table = json.loads(out.read_text())
    assert table["worker_us"] > 0
    assert table["reference_us"] > 0
    assert set(table["publish_batch_serialization_us"]) == {"attributes", "plain"}
    published = [line for line in logs.read_text().splitlines() if '"published"' in line]
    assert len(published) == 400

"""``warehouse-run`` against production-shaped settings: it only starts the run; the workers do it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from warehouse.scripts.seed import seed

bounded = pytest.mark.timeout(300, method="signal")


def warehouse_run(ini_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warehouse.scripts.run", str(ini_file), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@bounded
def test_warehouse_run_wait_follows_a_run_done_by_the_workers(ini_file: Path, engine: Engine, workers) -> None:
    seed(engine, "cli-it", products=3_210, shipments=0)

    done = warehouse_run(ini_file, "cli-it", "valuation", "--chunk-size", "250", "--wait")

    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "succeeded"
    assert run["items"]["done"] == 3_210
    assert run["chunks"]["done"] == 13
    assert "succeeded, 13/13 chunks" in done.stderr  # the progress bar's last line


@bounded
def test_warehouse_run_without_wait_prints_the_pending_run_and_returns(ini_file: Path, engine: Engine, workers) -> None:
    seed(engine, "cli-it-2", products=10, shipments=0)

    started = warehouse_run(ini_file, "cli-it-2", "valuation")

    assert started.returncode == 0, started.stderr
    run = json.loads(started.stdout)
    assert run["status"] == "pending"
    assert run["links"]["self"] == f"/api/runs/{run['id']}"

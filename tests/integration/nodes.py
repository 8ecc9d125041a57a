"""Worker nodes dying, and the reconciler bringing their runs back: helpers for the tests that kill them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from warehouse.models.runs import RunStatus

REPO_ROOT = Path(__file__).resolve().parents[2]
TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIALLY_FAILED, RunStatus.FAILED, RunStatus.CANCELLED})


def process_children(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid`` (the worker node's pool children)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name may hold spaces and parentheses: the fields after the last ")" are fixed.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def is_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting for a reaper does not: it runs no more code)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def running_chunks_of(engine: Engine, run_id: int, hostname: str) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.scalars(
                text("SELECT id FROM run_chunks WHERE run_id = :run_id AND status = 'running' AND worker_hostname = :host"),
                {"run_id": run_id, "host": hostname},
            )
        )


def freeze_holding_a_chunk(engine: Engine, run_id: int, worker: Any, timeout: float) -> list[int]:
    """SIGSTOP the worker node's whole process group at a moment when it holds a claimed chunk of the
    run; the ids of the chunks it holds. Frozen, it can no more finish them than a dead node could,
    so the kill that follows lands in the middle of a chunk every time, not only when lucky."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        os.killpg(worker.process.pid, signal.SIGSTOP)
        time.sleep(0.2)  # a commit already sent lands meanwhile: the ledger is now what the node left
        held = running_chunks_of(engine, run_id, worker.name)
        if held:
            return held
        os.killpg(worker.process.pid, signal.SIGCONT)
        time.sleep(0.02)
    pytest.fail(f"{worker.name} held no chunk of run {run_id} within {timeout} s")


def kill_node(worker: Any, children: list[int]) -> None:
    """The node dies: kill -9 of its main process. Its pool children are orphans then; kill them too
    (a dead machine takes them along), and reap the main process."""
    os.kill(worker.process.pid, signal.SIGKILL)
    for child in children:
        os.kill(child, signal.SIGKILL)
    worker.kill()


def warehouse_reconcile(ini_file: Path) -> dict[str, Any]:
    """Run ``warehouse-reconcile INI`` as cron would; its JSON report."""
    script = Path(sys.executable).with_name("warehouse-reconcile")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "warehouse.scripts.reconcile"]
    # The repository root on the path, for ``warehouse.extra_operations`` (the tests' probes).
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [*command, str(ini_file)],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=pythonpath),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def reconcile_until_finished(api: Any, ini_file: Path, run_id: int, timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the reconciler again and again, as beat would (only more often), until the run ends; the
    run then (as ``api``, the conftest's Api, reads it), and every report."""
    reports: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        run = api.run(run_id)
        if run["status"] in TERMINAL_STATUSES:
            return run, reports
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} did not end within {timeout} s of reconciling: {run}; reports {reports}")
        reports.append(warehouse_reconcile(ini_file))
        time.sleep(0.5)

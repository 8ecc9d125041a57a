"""Runs started the way a user starts them from a terminal: ``warehouse-run INI CODE OPERATION --wait``.

The command's whole life is timed, from starting it to its exit: its own start-up (imports, reading the
ini), the run's creation, the first task's send, the wait, and the poll that sees the end. The end as
the ledger recorded it (``finished_at``) is read afterwards, so the figures can also say how long after
the run's end the command noticed it and exited.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchError

# The console script pip installs next to this interpreter, as a user's shell finds it.
WAREHOUSE_RUN = Path(sys.executable).with_name("warehouse-run")


@dataclass(frozen=True)
class CliRun:
    seconds: float  # from starting the command to its exit
    document: dict[str, Any]  # the run's JSON, as the command printed it at the end
    exit_status: int
    # How long after the run's recorded end the command exited (the last poll, printing, exiting).
    exited_after_end: float
    cpu_seconds: float  # the command's own CPU time, user and system


def run_with_cli(ini: Path, code: str, operation: str, *, chunk_size: int | None = None, timeout: float = 900) -> CliRun:
    """``warehouse-run INI CODE OPERATION [--chunk-size N] --wait``, timed; its progress bar is dropped."""
    command = [str(WAREHOUSE_RUN), str(ini), code, operation, "--wait"]
    if chunk_size:
        command += ["--chunk-size", str(chunk_size)]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, check=False)
    seconds = time.perf_counter() - started
    exited_at = dt.datetime.now(dt.timezone.utc)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (children_after.ru_utime - children_before.ru_utime) + (children_after.ru_stime - children_before.ru_stime)
    try:
        document = json.loads(done.stdout)
    except ValueError:
        raise BenchError(f"{' '.join(command)} exited {done.returncode} without the run's JSON: {done.stderr[-2000:]}") from None
    finished_at = document.get("finished_at")
    after = (exited_at - dt.datetime.fromisoformat(finished_at)).total_seconds() if finished_at else float("nan")
    return CliRun(seconds, document, done.returncode, after, cpu_seconds)

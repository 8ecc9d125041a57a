"""Flower on a real worker: ``celery -A tasks flower`` started as `make flower` starts it (the app
built from WAREHOUSE_INI), asked through its HTTP API for the workers, then for the tasks of a run.

The worker runs with ``-E`` (task events), as docker-compose.yml's does: Flower lists the tasks it
is told of by events, while it finds the workers and their registered tasks by asking them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from warehouse.scripts.seed import seed

# The three tasks of a run (tasks/runs.py), by the names Celery registers them under.
RUN_TASKS = {"processWholeWarehouse", "processSomeProducts", "processFinished"}
FLOWER_READY_TIMEOUT = 60.0
FLOWER_STOP_TIMEOUT = 15.0
bounded = pytest.mark.timeout(240, method="signal")


class Flower:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process, self.port, self.log_path = process, port, log_path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as answer:
            return json.load(answer)

    def poll(self, path: str, until: Callable[[Any], bool], what: str) -> Any:
        """GET ``path`` until ``until(answer)`` holds; fail with Flower's log after FLOWER_READY_TIMEOUT."""
        deadline = time.monotonic() + FLOWER_READY_TIMEOUT
        answer: Any = None
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"flower exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                answer = self.get(path)
                if until(answer):
                    return answer
            except OSError:  # not listening yet, or answering 5xx while the broker is asked
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"flower: no {what} within {FLOWER_READY_TIMEOUT} s; last answer {answer!r}:\n"
                            f"{self.log_path.read_text()}")
            time.sleep(0.5)


@pytest.fixture
def start_flower(harness: ModuleType, tmp_path: Path) -> Iterator[Callable[[Path], Flower]]:
    """``start_flower(ini)``: ``celery -A tasks flower`` on a free port for that ini, its API open
    without authentication (FLOWER_UNAUTHENTICATED_API, as `make flower` does); stopped with SIGTERM
    when the test ends, which must end it cleanly (exit status 0)."""
    started: list[Flower] = []

    def start(ini_file: Path) -> Flower:
        port, log_path = harness.free_port(), tmp_path / "flower.log"
        environment = {**harness._worker_environment(ini_file), "FLOWER_UNAUTHENTICATED_API": "true"}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tasks", "flower", "--address=127.0.0.1", f"--port={port}"],
                cwd=harness.REPO_ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        started.append(Flower(process, port, log_path))
        return started[-1]

    yield start
    for flower in started:
        if flower.process.poll() is None:
            flower.process.send_signal(signal.SIGTERM)
        try:
            returncode = flower.process.wait(timeout=FLOWER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            flower.process.kill()
            flower.process.wait()
            pytest.fail(f"flower did not stop within {FLOWER_STOP_TIMEOUT} s of SIGTERM:\n{flower.log_path.read_text()}")
        assert returncode == 0, f"flower exited with {returncode} on SIGTERM:\n{flower.log_path.read_text()}"


@bounded
def test_flower_shows_the_worker_its_three_run_tasks_and_a_run_s_tasks(make_lane, start_flower) -> None:
    lane = make_lane("flower", workers=["f1"], concurrency=1, worker_args=["-E"])
    worker = lane.workers[0].name
    flower = start_flower(lane.ini_file)

    workers = flower.poll(
        "/api/workers?refresh=1",
        lambda answer: RUN_TASKS <= set(answer.get(worker, {}).get("registered", [])),
        f"worker {worker} with the tasks {sorted(RUN_TASKS)} registered",
    )
    assert {queue["name"] for queue in workers[worker]["active_queues"]} == {lane.queue, f"{lane.queue}.runs"}
    # Alive by its event heartbeats: the events reach Flower, so the run's tasks will too.
    flower.poll("/api/workers?status=1", lambda answer: answer.get(worker) is True, f"heartbeat events from {worker}")

    seed(lane.engine, "flower", products=1_000, shipments=0)
    run = lane.api.wait_until_finished(lane.api.start_run("flower", "valuation")["id"], timeout=60)
    assert run["status"] == "succeeded", run

    tasks = flower.poll(
        "/api/tasks",
        lambda answer: {task["name"] for task in answer.values() if task["state"] == "SUCCESS"} >= RUN_TASKS,
        f"the run's tasks {sorted(RUN_TASKS)} succeeded",
    )
    chunks = [task for task in tasks.values() if task["name"] == "processSomeProducts"]
    assert len(chunks) == 2 and {task["worker"] for task in chunks} == {worker}

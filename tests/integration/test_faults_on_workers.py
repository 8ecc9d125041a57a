"""Runs never get stuck, never lose work, never do work twice: runs on real workers while things go
wrong under them (PostgreSQL restarting, a message delivered again, a pool child killed).

Tests that restart or kill something do it on a ``Lane`` of their own (a queue, ini, web app and
workers of their own; see conftest.py), so the session's w1 and w2 and the order of tests don't matter.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import Engine, text

from tests.integration.checks import (
    assert_succeeded_once_per_chunk,
    assert_valued,
    chunk_rows,
    run_row,
    warehouse_id,
)
from warehouse import ledger
from warehouse.scripts.seed import seed

TASK_RESULT_TIMEOUT = 30.0


# --- 1. PostgreSQL restarts in the middle of a run ------------------------------------------------

# Down for longer than a chunk's pause (0.2 s), so every chunk in flight needs the database while it
# is down: the test never depends on a restart quick enough to slip between two chunks unnoticed.
POSTGRES_DOWN_SECONDS = 1.5
RETRY_LOGGED = re.compile(r"Task processSomeProducts\[[0-9a-f-]+\] retry: Retry in [0-9.]+s: OperationalError")


@pytest.mark.timeout(180, method="signal")
def test_a_run_survives_postgresql_restarting_in_its_middle(postgresql_stopped, make_lane) -> None:
    lane = make_lane("pg-restart", workers=["r1", "r2"])
    engine = lane.engine
    seed(engine, "it-pg-restart", products=20_000, shipments=0)
    log_offsets = {worker.name: worker.log_size() for worker in lane.workers}

    # 40 chunks of 500 (the ini's size), 0.2 s each, on 2 workers of 2 pool children: 2 s and more.
    started = lane.api.start_run("it-pg-restart", "slow_valuation")
    before = lane.api.wait_for(
        started["id"], lambda run: run["chunks"]["done"] >= 5, timeout=60, what="5 chunks done"
    )
    assert before["chunks"]["remaining"] >= 10, f"too little left for the restart to land mid-run: {before}"

    with postgresql_stopped():
        time.sleep(POSTGRES_DOWN_SECONDS)

    # The web app answers errors while the database is away: polls are tried again meanwhile.
    run = lane.api.wait_until_finished(started["id"], timeout=120, tolerate_errors=True)

    chunks = chunk_rows(engine, run["id"])
    assert len(chunks) == 40
    assert_succeeded_once_per_chunk(run, chunks, 20_000)
    assert_valued(engine, "it-pg-restart", run, 20_000)

    retries = [
        line
        for worker in lane.workers
        for line in worker.log(since=log_offsets[worker.name]).splitlines()
        if RETRY_LOGGED.search(line)
    ]
    assert retries, "no chunk retried: the restart did not hit a chunk in flight, so nothing was tested"
    # A chunk claimed before the restart, whose work was cut off, was taken over by its own retry.
    assert max(chunk["attempts"] for chunk in chunks) >= 2, chunks


# --- 2. A finished run's messages delivered again ---------------------------------------------------


def product_versions(engine: Engine, warehouse: int, start_id: int, end_id: int) -> dict[int, str]:
    """Each product's ``xmin``: the transaction that last wrote the row, so any rewrite shows."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, xmin::text FROM products"
                " WHERE warehouse_id = :warehouse AND id BETWEEN :start_id AND :end_id"
            ),
            {"warehouse": warehouse, "start_id": start_id, "end_id": end_id},
        )
        return {product_id: version for product_id, version in rows}


@pytest.mark.timeout(120, method="signal")
def test_messages_of_a_finished_run_delivered_again_change_nothing(
    api, engine: Engine, workers, control_app: Celery
) -> None:
    seed(engine, "it-redelivered", products=3_000, shipments=0)
    warehouse = warehouse_id(engine, "it-redelivered")
    run = api.wait_until_finished(api.start_run("it-redelivered", "valuation")["id"], timeout=60)
    assert run["status"] == "succeeded", run
    run_id = run["id"]
    run_before = run_row(engine, run_id)
    chunks_before = chunk_rows(engine, run_id)
    assert len(chunks_before) == 6
    chunk = chunks_before[3]
    assert chunk["attempts"] == 1
    products_before = product_versions(engine, warehouse, chunk["start_id"], chunk["end_id"])
    assert len(products_before) == 500

    def send_again(name: str, *args: Any) -> Any:
        # disable_sync_subtasks=False: this is no task, but the functional tests' embedded worker, when
        # it ran in this process first, left Celery's process-wide "inside a worker" flag set.
        result = control_app.send_task(name, args=list(args))
        return result.get(timeout=TASK_RESULT_TIMEOUT, disable_sync_subtasks=False)

    assert send_again("processSomeProducts", run_id, chunk["start_id"], chunk["end_id"]) == "skipped"
    assert send_again("processFinished", [], run_id) == ledger.FinaliseResult.DONE_ALREADY
    assert send_again("processWholeWarehouse", run_id) == 0

    # Not a column of the run, its chunks or the chunk's products changed: attempts still 1, the
    # counters, result and finished_at as they were, no new chunk rows, no product rewritten.
    assert run_row(engine, run_id) == run_before
    assert chunk_rows(engine, run_id) == chunks_before
    assert product_versions(engine, warehouse, chunk["start_id"], chunk["end_id"]) == products_before
    assert api.run(run_id) == run


# --- 3. A pool child killed in the middle of a chunk -------------------------------------------------

CHILD_KILL_CHUNK_DELAY = 2.0


@dataclass(frozen=True)
class ActiveChunk:
    task_id: str
    worker_pid: int
    start_id: int


def claimed_active_chunk(control_app: Celery, worker: str, engine: Engine, run_id: int, timeout: float) -> ActiveChunk:
    """A chunk task running on ``worker`` right now that has claimed its chunk in the ledger less than
    half its pause ago: killed now, it dies holding the claim, before it writes anything."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = control_app.control.inspect(destination=[worker], timeout=1.0).active() or {}
        for task in replies.get(worker, []):
            if task["name"] != "processSomeProducts" or not task.get("worker_pid"):
                continue
            task_run_id, start_id, _end_id = task["args"]
            if task_run_id != run_id:
                continue
            with engine.connect() as connection:
                claimed = connection.scalar(
                    text(
                        "SELECT now() - started_at < make_interval(secs => :fresh) FROM run_chunks"
                        " WHERE run_id = :run_id AND start_id = :start_id AND status = 'running'"
                        " AND task_id = :task_id AND attempts = 1"
                    ),
                    {"run_id": run_id, "start_id": start_id, "task_id": task["id"], "fresh": CHILD_KILL_CHUNK_DELAY / 2},
                )
            if claimed:
                return ActiveChunk(task["id"], task["worker_pid"], start_id)
        time.sleep(0.05)
    pytest.fail(f"no freshly claimed chunk of run {run_id} active on {worker} within {timeout} s")


def database_now(engine: Engine) -> Any:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT now()"))


@pytest.mark.timeout(120, method="signal")
def test_a_chunk_whose_pool_child_is_killed_is_redelivered_at_once_and_taken_over(make_lane) -> None:
    lane = make_lane(
        "child-kill",
        workers=["k1"],
        concurrency=2,
        settings={"warehouse.test.chunk_delay_seconds": str(CHILD_KILL_CHUNK_DELAY)},
    )
    engine = lane.engine
    (worker,) = lane.workers
    seed(engine, "it-child-kill", products=1_500, shipments=0)

    # 6 chunks of 250, 2 s each, on one worker of 2 pool children: about 6 s, 8 s with the redo.
    started = lane.api.start_run("it-child-kill", "slow_valuation", chunk_size=250)
    victim = claimed_active_chunk(lane.control_app, worker.name, engine, started["id"], timeout=30)
    os.kill(victim.worker_pid, signal.SIGKILL)
    killed_at = database_now(engine)

    # No reconciler runs here, and Redis would redeliver an unacked message only after the 4 h
    # visibility timeout: only a message requeued at once (acks_late + task_reject_on_worker_lost)
    # lets the run end in time.
    run = lane.api.wait_until_finished(started["id"], timeout=60)

    chunks = chunk_rows(engine, run["id"])
    assert len(chunks) == 6
    assert_succeeded_once_per_chunk(run, chunks, 1_500)
    assert_valued(engine, "it-child-kill", run, 1_500)

    (killed,) = [chunk for chunk in chunks if chunk["start_id"] == victim.start_id]
    # Taken over by the redelivery of the same task: same task id, second attempt, done once.
    assert killed["task_id"] == victim.task_id
    assert killed["attempts"] == 2, killed
    # Requeued at the back of the queue, it waits for the chunks queued before it: seconds, not hours.
    assert (killed["started_at"] - killed_at).total_seconds() < 30, (killed, killed_at)
    assert [chunk["attempts"] for chunk in chunks if chunk is not killed] == [1] * 5

    log = worker.log()
    assert re.search(rf"pid:{victim.worker_pid} exited with 'signal 9 \(SIGKILL\)'", log), log
    assert "WorkerLostError('Worker exited prematurely: signal 9 (SIGKILL)" in log, log

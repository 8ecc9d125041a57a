"""Retention on PostgreSQL, Redis and real ``celery worker`` processes: ``purgeRunDetails`` sent as beat
sends it (by name, routed by the app's own settings to the runs' queue) removes the chunk rows and item
failures of the runs that ended more than 30 days ago, in batches, and nothing else; two sent at once
(two beats) do it once; a run whose row another transaction holds locked is skipped (SKIP LOCKED), not
waited on, and purged by the next pass; a purged run's redrive is refused.

It runs on a lane of its own (database, queue, workers): a purge looks at every run in its database.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text

from warehouse.scripts.seed import seed

BATCH_SIZE = 500  # rows per transaction: the old runs below take dozens of batches
PURGE_TIMEOUT = 60.0
DAY = dt.timedelta(days=1)


def add_run(engine: Engine, warehouse_id: int, status: str, ended_ago: dt.timedelta | None, chunks: int, failures: int) -> int:
    """A run written into the ledger as the workers leave one: ``chunks`` chunks of ten items, each
    with ``failures`` failed items, ended ``ended_ago`` (None: still active)."""
    now = dt.datetime.now(dt.timezone.utc)
    with engine.begin() as connection:
        run_id = connection.execute(
            text(
                "INSERT INTO runs (warehouse_id, operation, status, chunk_size, tolerated_failure_percent,"
                " chunks_total, chunks_done, chunks_failed, chunks_skipped, items_total, items_done, items_failed,"
                " result, created_at, started_at, finished_at, updated_at)"
                " VALUES (:warehouse, :operation, :status, 10, 100, :chunks, :chunks, 0, 0, :items, :done, :failed,"
                " '{\"items_failed\": 1}', :long_ago, :long_ago, :ended, :long_ago) RETURNING id"
            ),
            {
                "warehouse": warehouse_id, "operation": f"probe_{status}_{time.monotonic_ns()}", "status": status,
                "chunks": chunks, "items": chunks * 10, "done": chunks * (10 - failures), "failed": chunks * failures,
                "long_ago": now - 400 * DAY, "ended": None if ended_ago is None else now - ended_ago,
            },
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO run_chunks (run_id, seq, start_id, end_id, item_count, status, attempts, items_done, items_failed)"
                " SELECT :run, g, g * 10 + 1, g * 10 + 10, 10, 'done', 1, 10 - :failures, :failures"
                " FROM generate_series(0, :chunks - 1) AS g"
            ),
            {"run": run_id, "chunks": chunks, "failures": failures},
        )
        connection.execute(
            text(
                "INSERT INTO run_item_failures (run_id, chunk_id, item_id, error, created_at)"
                " SELECT c.run_id, c.id, c.start_id + k, 'quantity is negative', now()"
                " FROM run_chunks AS c, generate_series(0, :failures - 1) AS k WHERE c.run_id = :run"
            ),
            {"run": run_id, "failures": failures},
        )
    return run_id


def details_of(engine: Engine, run_id: int) -> tuple[int, int]:
    with engine.connect() as connection:
        return (
            connection.execute(text("SELECT count(*) FROM run_chunks WHERE run_id = :id"), {"id": run_id}).scalar_one(),
            connection.execute(text("SELECT count(*) FROM run_item_failures WHERE run_id = :id"), {"id": run_id}).scalar_one(),
        )


def run_rows(engine: Engine, run_ids: list[int]) -> dict[int, dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM runs WHERE id = ANY(:ids)"), {"ids": run_ids}).mappings()
        return {row["id"]: dict(row) for row in rows}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = PURGE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.2)


def without_purge_marks(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in ("details_purged_at", "updated_at")}


@pytest.mark.timeout(300, method="signal")
def test_retention_purges_what_is_old_and_nothing_else_on_real_workers(make_lane: Callable[..., Any]) -> None:
    # No sweep: it would end or restart the active runs written below, which must stay as they are.
    lane = make_lane("retention", workers=["t1", "t2"],
                     settings={"warehouse.retention_batch_size": str(BATCH_SIZE), "warehouse.worker_sweep": "false"})
    code = "it-retention"
    seed(lane.engine, code, products=300, shipments=0)
    api = lane.api
    # A run the workers really did, then made 31 days old.
    real = api.wait_until_finished(api.start_run(code, "valuation", chunk_size=50)["id"], timeout=60)
    assert real["status"] == "succeeded" and details_of(lane.engine, real["id"]) == (6, 0)
    with lane.engine.begin() as connection:
        connection.execute(text("UPDATE runs SET finished_at = now() - interval '31 days' WHERE id = :id"), {"id": real["id"]})
        warehouse_id = connection.execute(text("SELECT id FROM warehouses WHERE code = :code"), {"code": code}).scalar_one()

    old = [add_run(lane.engine, warehouse_id, status, 31 * DAY + n * DAY, chunks=200, failures=10)
           for n, status in enumerate(["failed", "partially_failed", "succeeded", "cancelled", "failed", "failed"])]
    old.append(real["id"])
    recent = [add_run(lane.engine, warehouse_id, status, 29 * DAY, chunks=20, failures=2) for status in ("failed", "succeeded")]
    active = [add_run(lane.engine, warehouse_id, status, None, chunks=20, failures=2)
              for status in ("pending", "running", "cancelling")]
    kept = recent + active
    locked, *purged_first = old
    before = run_rows(lane.engine, old + kept)
    celery_app = api.app.app.registry["celery_app"]  # the web app's, built from the lane's ini, as beat's is

    # Run `locked` is held by another transaction, as a redrive would hold it: the purge passes it by.
    with lane.engine.connect() as holder:
        holder.execute(text("SELECT id FROM runs WHERE id = :id FOR UPDATE"), {"id": locked})
        for _ in range(2):  # two beats, or a beat and an operator's send, at once
            celery_app.send_task("purgeRunDetails")
        wait_until(lambda: all(details_of(lane.engine, run_id) == (0, 0) for run_id in purged_first), "purge of the old runs")
        lane.wait_until_idle(PURGE_TIMEOUT)
        assert details_of(lane.engine, locked) == (200, 2000)
        assert run_rows(lane.engine, [locked])[locked] == before[locked]
        holder.rollback()

    celery_app.send_task("purgeRunDetails")
    wait_until(lambda: details_of(lane.engine, locked) == (0, 0), "purge of the run that was locked")
    lane.wait_until_idle(PURGE_TIMEOUT)

    after = run_rows(lane.engine, old + kept)
    for run_id in old:
        assert after[run_id]["details_purged_at"] is not None, run_id
        assert without_purge_marks(after[run_id]) == without_purge_marks(before[run_id])  # counters, result, status
    for run_id in kept:
        assert details_of(lane.engine, run_id) == (20, 40)
        assert after[run_id] == before[run_id]
    with lane.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM run_chunks")).scalar_one() == 20 * len(kept)
    assert sum(worker.log().count("Task purgeRunDetails[") for worker in lane.workers) >= 3

    # A purged run, through the API: its JSON says so, and a redrive is refused.
    shown = api.run(old[0])
    assert shown["details_purged_at"] and shown["items"]["failed"] == 2000
    refused = api.app.post(f"/api/runs/{old[0]}/redrive", headers=api.operator, status=409).json["error"]
    assert refused["code"] == "details_purged" and "start a new run instead" in refused["message"]

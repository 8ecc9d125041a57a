"""Runs end to end: POSTed through the web app, sent to real Redis, done by real worker processes,
checked in real PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.integration.checks import assert_all_done, valuation_mismatches, warehouse_id
from warehouse.scripts.seed import seed

RUN_TIMEOUT = 120.0
# pytest-timeout's "signal" method raises in the test, so the fixtures' finalizers still stop the
# workers and drop the database; the "thread" method would end the process and leak them.
bounded = pytest.mark.timeout(300, method="signal")
FINISHED_SUCCEEDED = re.compile(r"Task processFinished\[[0-9a-f-]+\] succeeded")


def chunk_rows(engine: Engine, run_id: int) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                """
                SELECT count(*) AS chunks,
                       count(*) FILTER (WHERE status = 'done') AS done,
                       array_agg(DISTINCT worker_hostname) AS hostnames
                FROM run_chunks WHERE run_id = :run_id
                """
            ),
            {"run_id": run_id},
        ).one()
    return row._asdict()


@bounded
def test_a_valuation_run_over_20000_products_is_shared_by_two_workers_and_finishes_once(
    api, engine: Engine, workers, wait_until_idle: Callable[[float], None]
) -> None:
    seed(engine, "it-valuation", products=20_000, shipments=0)
    warehouse = warehouse_id(engine, "it-valuation")
    log_offsets = {worker.name: worker.log_size() for worker in workers}

    started = api.start_run("it-valuation", "valuation")  # the ini's chunk size: 500
    run = api.wait_until_finished(started["id"], timeout=RUN_TIMEOUT)

    assert run["status"] == "succeeded", run
    assert run["finished_at"] is not None
    assert_all_done(run["items"], 20_000)
    assert_all_done(run["chunks"], 40)

    products = valuation_mismatches(engine, warehouse)
    assert products["products"] == 20_000
    assert products["not_valued"] == 0
    assert products["mismatches"] == 0
    assert Decimal(run["result"]["total_stock_value"]) == products["expected_total"]
    assert run["result"]["products_needing_reorder"] == products["expected_reorder"]

    chunks = chunk_rows(engine, run["id"])
    assert chunks["chunks"] == 40
    assert chunks["done"] == 40
    assert set(chunks["hostnames"]) == {worker.name for worker in workers}, "chunks should be spread over both"

    # What a run page polls, on PostgreSQL: every chunk done, both nodes alive, the timeline adding up.
    chunk_map = api.app.get(f"/api/runs/{run['id']}/chunks", headers=api.viewer, status=200).json
    assert chunk_map["states"] == "d" * 40
    assert {node["node"] for node in chunk_map["workers"]} == {worker.name for worker in workers}
    assert all(node["alive"] is True for node in chunk_map["workers"]), chunk_map["workers"]
    assert sum(node["chunks_done"] for node in chunk_map["workers"]) == 40
    timeline = api.app.get(f"/api/runs/{run['id']}/timeline", headers=api.viewer, status=200).json
    assert timeline["started_at"] == run["started_at"]
    assert sum(bucket["items"] for bucket in timeline["buckets"]) == run["items"]["done"] + run["items"]["failed"]
    assert sum(bucket["chunks"] for bucket in timeline["buckets"]) == 40

    # Only once nothing is queued, reserved, running or waiting for a retry can the logs be counted:
    # a second processFinished would have logged by then.
    wait_until_idle(60.0)
    finished_lines = [
        line
        for worker in workers
        for line in worker.log(since=log_offsets[worker.name]).splitlines()
        if FINISHED_SUCCEEDED.search(line)
    ]
    assert len(finished_lines) == 1, finished_lines


@bounded
def test_products_added_while_a_run_is_going_are_left_for_the_next_run(api, engine: Engine, workers) -> None:
    original_count, added_count = 30_000, 1_000
    seed(engine, "it-growing", products=original_count, shipments=0)
    warehouse = warehouse_id(engine, "it-growing")

    with engine.connect() as blocker:
        # Hold a row lock on the run's last product, so the chunk that covers it cannot finish (and
        # neither can the run) until the new products are in: the insert happens mid-run every time,
        # however fast the workers are.
        transaction = blocker.begin()
        try:
            last_original_id = blocker.scalar(
                text("SELECT max(id) FROM products WHERE warehouse_id = :warehouse"), {"warehouse": warehouse}
            )
            blocker.execute(text("SELECT id FROM products WHERE id = :id FOR UPDATE"), {"id": last_original_id})

            started = api.start_run("it-growing", "valuation", chunk_size=100)
            running = api.wait_for(
                started["id"],
                lambda run: run["status"] == "running" and run["items"]["total"] > 0,
                timeout=RUN_TIMEOUT,
                what="running with a plan",
            )
            assert running["items"]["total"] == original_count

            seed(engine, "it-growing", products=added_count, shipments=0, random_seed=7)

            still = api.run(started["id"])
            assert still["status"] == "running", "the products must be added while the run is going"
            assert still["items"]["done"] < original_count
        finally:
            transaction.rollback()

    run = api.wait_until_finished(started["id"], timeout=RUN_TIMEOUT)

    assert run["status"] == "succeeded", run
    assert_all_done(run["items"], original_count)
    assert_all_done(run["chunks"], 300)
    assert run["result"]["items_processed"] == original_count

    originals = valuation_mismatches(engine, warehouse, up_to_id=last_original_id)
    assert originals["products"] == original_count
    assert originals["not_valued"] == 0
    assert originals["mismatches"] == 0
    assert Decimal(run["result"]["total_stock_value"]) == originals["expected_total"]
    assert run["result"]["products_needing_reorder"] == originals["expected_reorder"]

    with engine.connect() as connection:
        added = connection.execute(
            text(
                """
                SELECT count(*) AS products,
                       count(*) FILTER (WHERE stock_value IS NULL AND needs_reorder IS NULL) AS not_valued
                FROM products WHERE warehouse_id = :warehouse AND id > :last_original_id
                """
            ),
            {"warehouse": warehouse, "last_original_id": last_original_id},
        ).one()
    assert added.products == added_count
    assert added.not_valued == added_count

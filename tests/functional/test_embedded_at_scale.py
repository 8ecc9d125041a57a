"""The embedded default with thousands of chunks: the chord stays linear (tasks/embedded_backend.py),
and a cancel ends its run at once however many chunk messages are still queued, because the run's
own tasks have a queue of their own (tasks/app.py). The per-chunk cost against a 500-chunk run is
measured by bench/embedded.py, not timed here."""

from __future__ import annotations

import time
from typing import Any

from webtest import TestApp

CHUNKS = 3_000
SETTLE_BOUND_SECONDS = 15.0  # bench/embedded.py measures the real figure (target 5 s at 19,000 queued)


def progress(testapp: TestApp, viewer: dict, run_id: int) -> dict[str, Any]:
    return testapp.get(f"/api/runs/{run_id}", headers=viewer, status=200).json


def test_a_cancel_with_thousands_of_chunks_queued_ends_the_run_in_seconds(
    testapp: TestApp, operator: dict, viewer: dict, db: Any, wait_for_run: Any
) -> None:
    warehouse = db.add_warehouse()
    db.add_products(warehouse.id, CHUNKS)
    run_id = testapp.post_json(f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation", "chunk_size": 1},
                               headers=operator, status=202).json["id"]
    deadline = time.monotonic() + 60
    while (run := progress(testapp, viewer, run_id))["chunks"]["done"] < 20:
        assert time.monotonic() < deadline, run
        time.sleep(0.02)
    assert run["chunks"]["total"] == CHUNKS

    asked = time.monotonic()
    testapp.post(f"/api/runs/{run_id}/cancel", headers=operator, status=202)
    ended = wait_for_run(testapp, run_id, timeout=SETTLE_BOUND_SECONDS)
    assert ended["status"] == "cancelled", ended
    assert time.monotonic() - asked < SETTLE_BOUND_SECONDS
    # Most chunks never ran: they were skipped, not valued.
    assert ended["chunks"]["skipped"] > CHUNKS // 2, ended["chunks"]
    assert ended["chunks"]["done"] + ended["chunks"]["skipped"] + ended["chunks"]["failed"] == CHUNKS

    # The cancelled run's queued messages are skipped after it; a new run still comes through whole.
    again = testapp.post_json(f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation", "chunk_size": 500},
                              headers=operator, status=202).json["id"]
    finished = wait_for_run(testapp, again, timeout=120)
    assert (finished["status"], finished["items"]["done"]) == ("succeeded", CHUNKS), finished


def test_a_run_of_more_chunks_than_celery_s_memory_cache_holds_ends(
    testapp: TestApp, operator: dict, db: Any, wait_for_run: Any
) -> None:
    # Celery's memory cache keeps 5,000 results: a chord of more used to wait on evicted ones.
    warehouse = db.add_warehouse()
    db.add_products(warehouse.id, 5_200)
    run_id = testapp.post_json(f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation", "chunk_size": 1},
                               headers=operator, status=202).json["id"]
    run = wait_for_run(testapp, run_id, timeout=240)
    assert (run["status"], run["chunks"]["done"], run["items"]["done"]) == ("succeeded", 5_200, 5_200), run

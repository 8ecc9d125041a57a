"""GET /api/workers: the worker processes of the ledger, here the embedded worker of the test session
(registered when it started) and processes written straight into the ledger, alive, silent or stopped."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, update
from webtest import TestApp

from tests.functional.helpers import assert_error
from warehouse.ledger import workers as fleet
from warehouse.models import ChunkStatus, Run, RunChunk, WorkerProcess

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def other_workers(db: Any, warehouse: Any) -> Iterator[dict[str, int]]:
    """Three processes besides the embedded one: one alive holding a chunk, one silent for a minute
    (dead), one stopped; removed at the end."""
    with db.session() as session:
        ids = {}
        for name, last_seen, stopped in (
            ("alive", NOW + dt.timedelta(hours=1), None),  # in the future: alive whatever the clock
            ("silent", NOW - dt.timedelta(minutes=1), None),
            ("stopped", NOW + dt.timedelta(hours=1), NOW),
        ):
            worker_id = fleet.register_worker(session, f"{name}@node-{name}", f"node-{name}", 1000 + len(ids))
            session.execute(
                update(WorkerProcess)
                .where(WorkerProcess.id == worker_id)
                .values(last_seen_at=last_seen, stopped_at=stopped, chunks_done=7)
            )
            ids[name] = worker_id
        run = Run(warehouse_id=warehouse.id, operation="valuation", status="cancelled", chunk_size=500)
        session.add(run)
        session.flush()
        session.add(
            RunChunk(
                run_id=run.id, seq=0, start_id=1, end_id=9, item_count=9, status=ChunkStatus.RUNNING,
                attempts=2, worker_id=ids["alive"], started_at=NOW,
            )
        )
    try:
        yield ids
    finally:
        with db.session() as session:
            session.execute(delete(Run).where(Run.id == run.id))
            session.execute(delete(WorkerProcess).where(WorkerProcess.id.in_(list(ids.values()))))


def listed(testapp: TestApp, viewer: dict, query: str = "") -> dict[str, Any]:
    return testapp.get(f"/api/workers{query}", headers=viewer, status=200).json


def test_the_embedded_worker_is_listed_alive(testapp: TestApp, viewer: dict) -> None:
    answer = listed(testapp, viewer)

    assert answer["dead_after_seconds"] == 15
    embedded = [worker for worker in answer["workers"] if worker["node"].startswith("embedded@")]
    assert embedded and embedded[0]["alive"] is True, answer
    assert embedded[0]["stopped_at"] is None


def test_live_processes_come_first_with_the_chunks_they_hold(
    testapp: TestApp, viewer: dict, other_workers: dict[str, int]
) -> None:
    workers = {worker["id"]: worker for worker in listed(testapp, viewer)["workers"]}
    order = list(workers)

    alive, silent, stopped = (workers[other_workers[name]] for name in ("alive", "silent", "stopped"))
    assert alive["alive"] is True and silent["alive"] is False and stopped["alive"] is False
    assert stopped["stopped_at"] is not None
    assert order.index(alive["id"]) < min(order.index(silent["id"]), order.index(stopped["id"]))
    assert alive["chunks_running"] == 1 and alive["chunks_done"] == 7
    (held,) = alive["running"]
    assert (held["start_id"], held["end_id"], held["attempt"]) == (1, 9, 2)
    assert silent["running"] == [] and silent["chunks_running"] == 0


def test_the_list_filters_on_alive_and_is_limited(testapp: TestApp, viewer: dict, other_workers: dict[str, int]) -> None:
    alive_ids = {worker["id"] for worker in listed(testapp, viewer, "?alive=true")["workers"]}
    dead_ids = {worker["id"] for worker in listed(testapp, viewer, "?alive=false")["workers"]}

    assert other_workers["alive"] in alive_ids and not alive_ids & dead_ids
    assert {other_workers["silent"], other_workers["stopped"]} <= dead_ids
    assert len(listed(testapp, viewer, "?limit=1")["workers"]) == 1


def test_a_limit_out_of_range_names_the_field(testapp: TestApp, viewer: dict) -> None:
    assert_error(testapp.get("/api/workers?limit=0", headers=viewer, status=400), 400, "invalid_request", field="limit")

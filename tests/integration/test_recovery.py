"""Recovery on real workers: a whole node killed, Redis emptied, items failing for good, a run
cancelled halfway, the broker down when a run is posted. Each run must end in the right terminal state
with the ledger and the products exactly right; where the broker lost messages, ``warehouse-reconcile``
(the command cron runs; beat runs the same code) gets the run going again from the ledger.

These tests kill worker nodes and empty Redis, so they run on a Redis database number of their own
(claimed from the same server the way the session claims its own, and emptied at the end), with their
own database, queue, ini, web app and workers: the session's w1 and w2, and any other test's tasks,
never meet theirs. Every test works on warehouses of its own, and the reconciler's decisions are only
ever checked for this module's runs.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import sessionmaker

from tests.integration.checks import assert_all_done, assert_valued, chunk_rows
from tests.integration.nodes import (
    freeze_holding_a_chunk,
    is_alive,
    kill_node,
    process_children,
    reconcile_until_finished,
    warehouse_reconcile,
)
from tests.integration.recovery_operations import FAIL_EVERY, PacedValuation, PartlyFailingValuation
from warehouse import ledger, scratch
from warehouse.models import Warehouse
from warehouse.scripts.seed import seed

PACED = PacedValuation.name
PARTLY_FAILING = PartlyFailingValuation.name
OPERATIONS_MODULE = "tests.integration.recovery_operations"
# This module's claim on its Redis DB; FLUSH_AND_CLAIM puts the same one back after emptying the DB.
RECOVERY_CLAIM_TOKEN = scratch.claim_token("test_recovery.py")
# 0.1 s per chunk of 500 on 4 pool children: a run of 100 chunks lasts about 2.5 s, long enough to
# break it halfway, short enough to sit through several times.
CHUNK_DELAY_SECONDS = 0.1
STALE_AFTER_SECONDS = 5
CONCURRENCY = 2  # pool children per worker node
RUN_TIMEOUT = 90.0
IDLE_TIMEOUT = 60.0
FINISHED_SUCCEEDED = re.compile(r"Task processFinished\[[0-9a-f-]+\] succeeded")


# --- a Redis DB, ini, web app and workers of this module's own ----------------------------------------


@pytest.fixture(scope="module")
def own_redis_url(harness: ModuleType, redis_url: str) -> Iterator[str]:
    """An empty Redis DB number of this module's own on the session's server (not the session's),
    claimed atomically as the session claims its own, and emptied at the end."""
    session_db = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs.get("db", 0)
    with harness.claimed_redis_url("test_recovery.py", token=RECOVERY_CLAIM_TOKEN, avoid=session_db) as url:
        yield url


@dataclass
class Recovery:
    """This module's lane: its queue, ini, web app (through the runs API) and control app."""

    harness: ModuleType
    queue: str
    ini_file: Path
    settings: dict[str, Any]
    api: Any  # conftest's Api
    control_app: Celery
    redis_url: str
    database_url: str

    def redis(self) -> redis.Redis:
        """A client of this module's Redis DB; use it in a ``with`` block, which closes it."""
        return redis.Redis.from_url(self.redis_url)

    def write_ini(self, name: str, redis_url: str | None = None, **settings: str) -> Path:
        """Another ini like this module's (same database, queue and operations), with ``settings`` added."""
        return self.harness.write_ini(
            self.ini_file.with_name(f"{name}.ini"), self.database_url, redis_url or self.redis_url,
            {**lane_settings(self.queue), **settings},
        )

    def wait_until_idle(self, workers: list[Any]) -> None:
        """Nothing queued, reserved, running or scheduled on ``workers``: their logs are complete."""
        self.harness._wait_until_idle(self.control_app, self.redis_url, workers, IDLE_TIMEOUT, queue=self.queue)


def lane_settings(queue: str) -> dict[str, str]:
    return {
        # Chunks, retries and the chord's callback all go to this queue, which only these workers read.
        "celery.task_default_queue": queue,
        "warehouse.extra_operations": f"{OPERATIONS_MODULE}:PacedValuation {OPERATIONS_MODULE}:PartlyFailingValuation",
        "warehouse.test.recovery_chunk_delay_seconds": str(CHUNK_DELAY_SECONDS),
        # What the reconciler reads: a running run without progress for 5 s has lost its messages; a
        # pending run has lost its first task at once (the tests only reconcile when that is so).
        "warehouse.reconcile_stale_after_seconds": str(STALE_AFTER_SECONDS),
        "warehouse.reconcile_pending_after_seconds": "0",
        # These tests are about warehouse-reconcile (what cron and beat run): the workers' own sweep,
        # which would bring the same runs back 15-20 s later, waits far longer here so that the
        # reconciler's decisions are the ones checked. tests/integration/fleet tests the sweep.
        "warehouse.worker_dead_after_seconds": "600",
    }


@pytest.fixture(scope="module")
def own_database_url(harness: ModuleType, postgresql_lock: Any) -> Iterator[str]:
    """A database of this module's own, migrated to head: workers sweep their database for the
    chunks of dead workers, and must find only this module's there."""
    from warehouse.migrate import upgrade

    with scratch.throwaway_database(harness.PG_HOST, harness.PG_PORT, harness.PG_USER, "warehouse_recovery") as url:
        upgrade({"sqlalchemy.url": url})
        yield url


@pytest.fixture(scope="module")
def engine(own_database_url: str) -> Iterator[Engine]:
    """This module's database (it stands in for the session's ``engine`` in these tests)."""
    from warehouse.db import make_engine

    engine = make_engine({"sqlalchemy.url": own_database_url})
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def recovery(
    harness: ModuleType,
    own_database_url: str,
    own_redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Recovery]:
    from tasks.app import make_celery

    database_url = own_database_url

    queue = f"recovery_{secrets.token_hex(3)}"
    ini_file = harness.write_ini(
        tmp_path_factory.mktemp("recovery") / "recovery.ini", database_url, own_redis_url, lane_settings(queue)
    )
    own_settings = harness.load_ini_settings(ini_file)
    control_app = make_celery(own_settings)
    try:
        with harness._web_app(own_settings) as webapp:
            yield Recovery(
                harness, queue, ini_file, own_settings, harness.Api(webapp), control_app, own_redis_url, database_url
            )
    finally:
        control_app.close()


@pytest.fixture
def start_recovery_workers(recovery: Recovery, tmp_path: Path) -> Iterator[Callable[[list[str]], list[Any]]]:
    """``start_recovery_workers(["a", "b"])``: worker nodes on this module's ini, reading only its queue,
    of CONCURRENCY pool children each; every one stopped (process group and all) when the test ends."""
    log_dir = tmp_path / "worker-logs"
    log_dir.mkdir()
    starter = recovery.harness.WorkerStarter(recovery.control_app, recovery.ini_file, log_dir)
    try:
        yield lambda names: starter(names, queues=[recovery.queue], concurrency=CONCURRENCY)
    finally:
        starter.stop_all()


@pytest.fixture
def new_warehouse(engine: Engine) -> Iterator[Callable[[int], str]]:
    """``new_warehouse(products)``: a warehouse of this test's own, seeded; its runs that are still
    active when the test ends (it failed halfway) are cancelled, so no later reconciler picks them up."""
    codes: list[str] = []

    def make(products: int) -> str:
        code = f"it-recovery-{secrets.token_hex(4)}"
        seed(engine, code, products=products, shipments=0)
        codes.append(code)
        return code

    try:
        yield make
    finally:
        if codes:
            with engine.begin() as connection:
                connection.execute(
                    text(
                        "UPDATE runs SET status = 'cancelled', finished_at = now() FROM warehouses"
                        " WHERE runs.warehouse_id = warehouses.id AND warehouses.code = ANY(:codes)"
                        " AND runs.status IN ('pending', 'running', 'cancelling')"
                    ),
                    {"codes": codes},
                )


# --- helpers ----------------------------------------------------------------------------------------


def resumed_chunks(reports: list[dict[str, Any]], run_id: int) -> list[int]:
    """The chunks each report says it re-sent for ``run_id``, one entry per report that resumed it."""
    return [entry["chunks_sent"] for report in reports for entry in report["resumed"] if entry["run_id"] == run_id]


def assert_succeeded_once(run: dict[str, Any], chunks: list[dict[str, Any]], items: int) -> None:
    """Succeeded, finished, and every chunk and item counted exactly once, in the run and its rows."""
    assert run["status"] == "succeeded", run
    assert run["finished_at"] is not None
    assert_all_done(run["items"], items)
    assert_all_done(run["chunks"], len(chunks))
    assert Counter(chunk["status"] for chunk in chunks) == {"done": len(chunks)}
    assert sum(chunk["items_done"] for chunk in chunks) == items


def log_lines(workers: list[Any], offsets: dict[str, int], pattern: re.Pattern[str]) -> list[str]:
    return [
        line
        for worker in workers
        for line in worker.log(since=offsets.get(worker.name, 0)).splitlines()
        if pattern.search(line)
    ]


def finished_once_pattern(run_id: int) -> re.Pattern[str]:
    # tasks.runs logs this only when its conditional UPDATE wrote the result (not for DONE_ALREADY).
    return re.compile(rf"run {run_id} finished: ")


# --- 1. A worker node killed outright in the middle of a run ----------------------------------------


@pytest.mark.timeout(180, method="signal")
def test_a_run_survives_a_worker_node_killed_outright(
    recovery: Recovery, start_recovery_workers, new_warehouse, engine: Engine
) -> None:
    code = new_warehouse(50_000)
    victim, survivor = start_recovery_workers(["w-victim", "w-survivor"])

    # 100 chunks of 500 (the ini's size), 0.1 s each, on 2 nodes of 2 pool children.
    started = recovery.api.start_run(code, PACED)
    run_id = started["id"]
    recovery.api.wait_for(run_id, lambda run: run["chunks"]["done"] >= 10, timeout=60, what="10 chunks done")
    held = freeze_holding_a_chunk(engine, run_id, victim, timeout=30)
    children = process_children(victim.process.pid)
    assert children, "the victim node has no pool children"

    kill_node(victim, children)
    before = recovery.api.run(run_id)
    assert before["status"] == "running", before

    # The messages the node had taken stay unacknowledged in Redis for the 4 h visibility timeout, and
    # the sweep waits 600 s here: the run ends through the reconciler. A node of a new name joins.
    (fresh,) = start_recovery_workers(["w-fresh"])
    run, reports = reconcile_until_finished(recovery.api, recovery.ini_file, run_id, timeout=RUN_TIMEOUT)

    chunks = chunk_rows(engine, run_id)
    assert len(chunks) == 100
    assert_succeeded_once(run, chunks, 50_000)
    assert run["items"]["done"] == 50_000
    assert_valued(engine, code, run, 50_000)
    assert resumed_chunks(reports, run_id), f"the reconciler never resumed run {run_id}: {reports}"

    # The chunks the node died holding were released and done again, once, by a live node.
    redone = [chunk for chunk in chunks if chunk["id"] in held]
    assert [(chunk["attempts"], chunk["worker_hostname"] != victim.name) for chunk in redone] == [(2, True)] * len(held)
    assert {chunk["attempts"] for chunk in chunks if chunk["id"] not in held} == {1}

    # The result was written once, however many callbacks came (every resume sends one).
    recovery.wait_until_idle([survivor, fresh])
    assert len(log_lines([victim, survivor, fresh], {}, finished_once_pattern(run_id))) == 1

    # Nothing of the killed node outlives it.
    assert [pid for pid in [victim.process.pid, *children] if is_alive(pid)] == []


# --- 2. Redis emptied in the middle of a run -------------------------------------------------------

# FLUSHDB of this module's own Redis DB number, not FLUSHALL: the server is shared with the session's
# DB and with anyone else's. Atomically with it, the DB is claimed again, so that no other session
# takes it for an empty one meanwhile. Returns how many messages were queued when it emptied the DB.
FLUSH_AND_CLAIM = """
local queued = redis.call('LLEN', KEYS[1])
redis.call('FLUSHDB')
redis.call('SET', KEYS[2], ARGV[1])
return queued
"""


@pytest.mark.timeout(180, method="signal")
def test_a_run_survives_redis_losing_everything_in_its_middle(
    recovery: Recovery, start_recovery_workers, new_warehouse, engine: Engine
) -> None:
    code = new_warehouse(30_000)
    workers = start_recovery_workers(["w-flush-a", "w-flush-b"])

    # 60 chunks of 500, 0.1 s each, on 4 pool children: about 1.5 s.
    started = recovery.api.start_run(code, PACED)
    run_id = started["id"]
    recovery.api.wait_for(run_id, lambda run: run["chunks"]["done"] >= 5, timeout=60, what="5 chunks done")
    with recovery.redis() as client:
        queued = client.eval(FLUSH_AND_CLAIM, 2, recovery.queue, scratch.CLAIM_KEY, RECOVERY_CLAIM_TOKEN)
    assert queued >= 10, f"too little was queued for the flush to land mid-run: {queued} messages"

    # Lost: every queued chunk message, the chord's counter and the queue's binding. The chunks running
    # at the time end normally; after that nothing moves until the reconciler re-sends from the ledger.
    run, reports = reconcile_until_finished(recovery.api, recovery.ini_file, run_id, timeout=RUN_TIMEOUT)

    chunks = chunk_rows(engine, run_id)
    assert len(chunks) == 60
    assert_succeeded_once(run, chunks, 30_000)
    assert_valued(engine, code, run, 30_000)
    # Nothing was done twice: no chunk was ever claimed a second time.
    assert {chunk["attempts"] for chunk in chunks} == {1}
    # Exactly the lost messages' chunks were re-sent: those running or reserved in a worker at the
    # flush still ran (a worker holds one unacknowledged message per pool child, prefetch 1).
    assert resumed_chunks(reports, run_id)[0] == queued, (queued, reports)

    recovery.wait_until_idle(workers)
    assert len(log_lines(workers, {}, finished_once_pattern(run_id))) == 1


# --- 3. Items that fail for good ---------------------------------------------------------------------


def failures_listed(api: Any, run_id: int) -> list[dict[str, Any]]:
    """Every failed item ``GET /api/runs/{id}/failures`` lists, following ``next_cursor`` to the end."""
    items, cursor = [], None
    for _ in range(10_000):
        query = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = api.app.get(f"/api/runs/{run_id}/failures", query, headers=api.viewer, status=200).json
        assert page["chunks"] == [], "no chunk failed as a whole: every chunk valued most of its products"
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    pytest.fail("the failures' cursor never ends")


def failing_products_of_chunks_done(engine: Engine, run_id: int) -> set[int]:
    """The products the probe fails, in the chunks of the run that ran: one query."""
    with engine.connect() as connection:
        return set(
            connection.scalars(
                text(
                    """
                    SELECT p.id FROM products p
                    JOIN runs r ON r.id = :run_id AND p.warehouse_id = r.warehouse_id
                    JOIN run_chunks c ON c.run_id = r.id AND c.status = 'done' AND p.id BETWEEN c.start_id AND c.end_id
                    WHERE p.id % :every = 0
                    """
                ),
                {"run_id": run_id, "every": FAIL_EVERY},
            )
        )


@pytest.mark.timeout(180, method="signal")
def test_items_failing_for_good_end_the_run_failed_or_partially_failed_by_its_threshold(
    recovery: Recovery, start_recovery_workers, new_warehouse, engine: Engine
) -> None:
    code = new_warehouse(20_000)  # 40 chunks of 500, one product in 20 of each failing: 5 %
    workers = start_recovery_workers(["w-fail-a", "w-fail-b"])

    # Nothing tolerated: the run fails early. Each of the 4 pool children claims one chunk before any
    # chunk ends; once one ends, its failures are past the threshold and every later claim is a skip.
    offsets = {worker.name: worker.log_size() for worker in workers}
    intolerant = recovery.api.start_run(code, PARTLY_FAILING, tolerated_failure_percent=0)
    run = recovery.api.wait_until_finished(intolerant["id"], timeout=RUN_TIMEOUT)
    assert run["status"] == "failed", run
    assert run["finished_at"] is not None
    chunks = chunk_rows(engine, run["id"])
    ran = [chunk for chunk in chunks if chunk["status"] == "done"]
    assert 1 <= len(ran) <= 2 * CONCURRENCY, Counter(chunk["status"] for chunk in chunks)
    assert Counter(chunk["status"] for chunk in chunks) == {"done": len(ran), "skipped": 40 - len(ran)}
    assert run["chunks"] == {"total": 40, "done": len(ran), "failed": 0, "skipped": 40 - len(ran), "remaining": 0}
    failing = failing_products_of_chunks_done(engine, run["id"])
    assert run["items"]["failed"] == len(failing) > 0
    assert run["items"]["done"] == sum(chunk["item_count"] for chunk in ran) - len(failing)
    listed = failures_listed(recovery.api, run["id"])
    assert sorted(item["item_id"] for item in listed) == sorted(failing)
    assert {item["chunk_id"] for item in listed} <= {chunk["id"] for chunk in ran}
    recovery.wait_until_idle(workers)
    assert len(log_lines(workers, offsets, FINISHED_SUCCEEDED)) == 1

    # Within a tolerance of 10 %: every chunk runs, the run partially fails.
    offsets = {worker.name: worker.log_size() for worker in workers}
    tolerant = recovery.api.start_run(code, PARTLY_FAILING, tolerated_failure_percent=10)
    run = recovery.api.wait_until_finished(tolerant["id"], timeout=RUN_TIMEOUT)
    assert run["status"] == "partially_failed", run
    assert run["finished_at"] is not None
    assert run["chunks"] == {"total": 40, "done": 40, "failed": 0, "skipped": 0, "remaining": 0}
    assert run["items"] == {"total": 20_000, "done": 19_000, "failed": 1_000, "remaining": 0}
    failing = failing_products_of_chunks_done(engine, run["id"])
    assert len(failing) == 1_000
    listed = failures_listed(recovery.api, run["id"])
    assert sorted(item["item_id"] for item in listed) == sorted(failing)
    assert all(item["error"] == f"product {item['item_id']} cannot be valued" for item in listed)
    recovery.wait_until_idle(workers)
    assert len(log_lines(workers, offsets, FINISHED_SUCCEEDED)) == 1


# --- 4. A run cancelled in its middle ----------------------------------------------------------------


@pytest.mark.timeout(180, method="signal")
def test_a_run_cancelled_in_its_middle_starts_no_chunk_after_the_cancel(
    recovery: Recovery, start_recovery_workers, new_warehouse, engine: Engine
) -> None:
    code = new_warehouse(20_000)
    workers = start_recovery_workers(["w-cancel-a", "w-cancel-b"])
    pool_children = 2 * CONCURRENCY

    # 40 chunks of 500, 0.1 s each, on 4 pool children: about 1 s.
    started = recovery.api.start_run(code, PACED)
    run_id = started["id"]
    recovery.api.wait_for(run_id, lambda run: run["chunks"]["done"] >= 4, timeout=60, what="4 chunks done")
    cancelling = recovery.api.app.post(f"/api/runs/{run_id}/cancel", headers=recovery.api.operator, status=202).json
    answered_at = dt.datetime.now(dt.timezone.utc)
    assert cancelling["status"] == "cancelling", cancelling
    # The counts as the cancel read them, the run's row locked: chunks not ended then, of which at most
    # one per pool child had been claimed. Enough of them, or the cancel did not land mid-run.
    unended = cancelling["chunks"]["remaining"]
    assert unended > 2 * pool_children, f"too little left for the cancel to land mid-run: {cancelling}"

    run = recovery.api.wait_until_finished(run_id, timeout=RUN_TIMEOUT)

    assert run["status"] == "cancelled", run
    assert run["finished_at"] is not None
    chunks = chunk_rows(engine, run_id)
    statuses = Counter(chunk["status"] for chunk in chunks)
    assert set(statuses) <= {"done", "skipped"}, statuses
    assert statuses["done"] + statuses["skipped"] == 40 == len(chunks)
    assert run["chunks"] == {"total": 40, "done": statuses["done"], "failed": 0, "skipped": statuses["skipped"], "remaining": 0}
    assert statuses["skipped"] >= unended - pool_children, statuses
    assert run["items"]["done"] == sum(chunk["items_done"] for chunk in chunks) == 500 * statuses["done"]
    # Skipped chunks never started; no chunk started after the cancel was answered.
    assert [chunk["id"] for chunk in chunks if chunk["status"] == "skipped" and chunk["started_at"] is not None] == []
    late = [chunk for chunk in chunks if chunk["started_at"] is not None and chunk["started_at"] > answered_at]
    assert late == [], (answered_at, late)

    recovery.wait_until_idle(workers)
    assert len(log_lines(workers, {}, finished_once_pattern(run_id))) == 1


@pytest.mark.timeout(60, method="signal")
def test_no_chunk_starts_while_a_cancel_is_being_committed(engine: Engine, new_warehouse) -> None:
    """Deterministic, in-process: the cancel's transaction is held open while a chunk is claimed."""
    code = new_warehouse(1_000)
    sessions = sessionmaker(engine)
    with sessions.begin() as session:
        warehouse = session.scalars(select(Warehouse).where(Warehouse.code == code)).one()
        run_id = ledger.create_run(session, warehouse, "valuation", chunk_size=500).id
    with sessions.begin() as session:
        first_chunk = ledger.plan_run(session, run_id)[0]

    claimed: list[Any] = []

    def claim() -> None:
        with sessions.begin() as session:
            claimed.append(ledger.claim_chunk(session, run_id, first_chunk.start_id, "probe@host", "probe-task"))

    with sessions.begin() as canceller:
        cancel_requested_at = ledger.cancel_run(canceller, run_id).cancel_requested_at
        claimer = threading.Thread(target=claim)
        claimer.start()
        # Correct code waits here for the cancel to commit (and then skips the chunk); give it time to
        # get it wrong: a claim that does not wait is done within this second.
        claimer.join(timeout=1.0)
    claimer.join(timeout=30)
    assert not claimer.is_alive()

    (chunk,) = [row for row in chunk_rows(engine, run_id) if row["start_id"] == first_chunk.start_id]
    assert chunk["started_at"] is None or chunk["started_at"] <= cancel_requested_at, (chunk, cancel_requested_at)
    assert claimed == [None]


# --- 5. The broker down when a run is posted ---------------------------------------------------------


@pytest.mark.timeout(120, method="signal")
def test_a_run_posted_while_the_broker_is_down_is_started_once_by_the_reconciler(
    recovery: Recovery, start_recovery_workers, new_warehouse, engine: Engine
) -> None:
    code = new_warehouse(5_000)
    workers = start_recovery_workers(["w-broker"])
    # A web app on the same database whose broker (and result backend) is a closed port; it gives up
    # publishing within about a second.
    broker_down_ini = recovery.write_ini(
        "broker-down",
        redis_url="redis://127.0.0.1:1/0",
        **{
            "celery.broker_connection_timeout": "1",
            "celery.broker_connection_max_retries": "0",
            "celery.task_publish_retry_policy": '{"max_retries": 0}',
        },
    )
    with recovery.harness._web_app(recovery.harness.load_ini_settings(broker_down_ini)) as broker_down:
        started = recovery.harness.Api(broker_down).start_run(code, "valuation", chunk_size=500)
    run_id = started["id"]

    assert started["status"] == "pending", started
    with recovery.redis() as client:
        assert recovery.harness.queued_messages(client, recovery.queue) == 0, "a message reached the broker"
    run = recovery.api.run(run_id)
    assert run["status"] == "pending" and run["started_at"] is None, run
    assert chunk_rows(engine, run_id) == []

    # The reconciler (pending runs count as lost at once in this ini) sends the first task again.
    report = warehouse_reconcile(recovery.ini_file)
    assert run_id in report["started"], report
    run = recovery.api.wait_until_finished(run_id, timeout=RUN_TIMEOUT)

    chunks = chunk_rows(engine, run_id)
    assert len(chunks) == run["chunks"]["total"] == 10
    assert len({chunk["start_id"] for chunk in chunks}) == 10  # planned once: no duplicate chunk rows
    assert_succeeded_once(run, chunks, 5_000)
    assert_valued(engine, code, run, 5_000)
    assert [chunk["attempts"] for chunk in chunks] == [1] * 10

    # Reconciling again re-sends nothing for the run: it has ended, and the ledger stays as it was.
    recovery.wait_until_idle(workers)
    again = warehouse_reconcile(recovery.ini_file)
    assert run_id not in again["started"] and resumed_chunks([again], run_id) == [], again
    recovery.wait_until_idle(workers)
    assert chunk_rows(engine, run_id) == chunks
    assert recovery.api.run(run_id) == run
    # processWholeWarehouse ran once for it: it planned and dispatched the run, and never came again.
    assert len(log_lines(workers, {}, re.compile(rf"run {run_id}: dispatched 10 chunks"))) == 1
    assert log_lines(workers, {}, re.compile(rf"run {run_id} was planned already")) == []

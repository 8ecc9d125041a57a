"""Dispatch: from the POST that starts a run to its first chunk starting, at 1,000,000 and 10,000,000 products.

Before the first chunk can start, a worker must plan the run (the chunk boundaries, computed by the
database in one statement, ``warehouse.ledger.plan_run``), commit the ledger, and publish the chord's
first message; the other worker process then picks it up. This benchmark times that path on a
valuation run at the default chunk size (500): POST /api/warehouses/{code}/runs, then the ledger's
first ``run_chunks.started_at`` (the database's clock, the same machine's). The run is then
cancelled: the rest of a 10,000,000-product valuation is the valuation benchmark's business.

Also measured: when the worker began planning (``runs.started_at``), the planning statement alone
(timed again in the same database after the run, rolled back), and the peak resident memory of the
worker processes (fresh workers for each size), so that a dispatch that loaded every id into Python
would show.

Products are inserted by one INSERT ... SELECT generate_series (10,000,000 rows in about two
minutes; the seed command's COPY from Python takes longer and the values do not matter here).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bench import common
from bench.common import BenchError, Environment, Result, Stopwatch, log

NAME = "dispatch"
SIZES = (1_000_000, 10_000_000)
CHUNK = 500
TARGET_FIRST_CHUNK_SECONDS = 2.0  # at the largest size
FIRST_CHUNK_TIMEOUT = 120.0
CANCEL_TIMEOUT = 900.0

SEED_SQL = """
INSERT INTO products (warehouse_id, sku, name, qty_on_hand, unit_cost, reorder_point)
SELECT :warehouse_id, 'SKU-' || lpad(n::text, 9, '0'), 'Product ' || n,
       (n * 7919) % 500, ((n * 104729) % 100000) / 100.0, (n * 31) % 60
FROM generate_series(1::bigint, :count) AS n
"""


def warehouse_code(size: int) -> str:
    return f"bench-dispatch-{size}"


def seed(engine: Any, size: int) -> None:
    with engine.begin() as connection:
        warehouse_id = connection.scalar(
            text("INSERT INTO warehouses (code, name, created_at) VALUES (:code, :code, now()) RETURNING id"),
            {"code": warehouse_code(size)},
        )
        connection.execute(text(SEED_SQL), {"warehouse_id": warehouse_id, "count": size})


def ledger_times(engine: Any, run_id: int) -> dict[str, Any]:
    """The run's ledger timestamps: created (the POST's transaction), planning started, first chunk
    started, and how many chunks it has."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT r.created_at, r.started_at, r.chunks_total,"
                " (SELECT min(started_at) FROM run_chunks WHERE run_id = r.id) FROM runs r WHERE r.id = :id"
            ),
            {"id": run_id},
        ).one()
    return {"created": row[0], "planning": row[1], "chunks": row[2], "first_chunk": row[3]}


def wait_for_first_chunk(engine: Any, run_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + FIRST_CHUNK_TIMEOUT
    while True:
        times = ledger_times(engine, run_id)
        if times["first_chunk"] is not None:
            return times
        if time.monotonic() > deadline:
            raise BenchError(f"run {run_id}: no chunk started within {FIRST_CHUNK_TIMEOUT:.0f} s: {times}")
        time.sleep(0.01)


def purge_queues(ini: Path) -> None:
    from tasks.app import make_celery

    app = make_celery(common.load_settings(ini))
    try:
        purged = app.control.purge()
    finally:
        app.close()
    log(f"{NAME}: {purged} queued messages of the cancelled run dropped")


def time_planning_statement(engine: Any, size: int) -> float:
    """The planning statement alone, as plan_run runs it, on the same warehouse, rolled back: the
    boundaries' share of dispatch."""
    from sqlalchemy.orm import Session

    from warehouse import ledger, operations

    with Session(engine) as session:
        warehouse_id = session.scalar(text("SELECT id FROM warehouses WHERE code = :c"), {"c": warehouse_code(size)})
        covered = operations.get("valuation").item_ids(warehouse_id, dt.date.today()).subquery()
        ledger.without_jit(session)
        with Stopwatch() as watch:
            rows = session.execute(ledger.chunk_bounds(covered, CHUNK, 0)).all()
        session.rollback()
    if not rows:
        raise BenchError(f"the planning statement found no chunks in warehouse {warehouse_code(size)}")
    return watch.seconds


def run(env: Environment, *, sizes: Sequence[int] = SIZES) -> Result:
    result = Result(NAME)
    sizes = sorted(set(sizes))
    ini = env.write_ini("dispatch")
    measured: dict[int, dict[str, float]] = {}
    with common.engine_for(ini) as engine:
        for size in sizes:
            with Stopwatch() as watch:
                seed(engine, size)
            log(f"{NAME}: seeded {size:,} products in {watch.seconds:.1f} s")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE products"))

        with common.web_api(env, ini) as api:
            for size in sizes:
                # Fresh workers per size: their peak memory is this size's.
                with common.workers(env, ini, nodes=1, concurrency=2) as started:
                    posted_at = time.time()
                    started_run = api.start_run(warehouse_code(size), "valuation", chunk_size=CHUNK)
                    times = wait_for_first_chunk(engine, started_run["id"])
                    api.app.post(f"/api/runs/{started_run['id']}/cancel", headers=api.operator, status=202)
                    # The dispatching process publishes every chunk's message, then skips them one by one.
                    finished = api.wait_until_finished(started_run["id"], CANCEL_TIMEOUT, poll_seconds=0.5)
                    peak = max(common.peak_rss_mib(pid) for node in started for pid in common.pool_children(node))
                # The cancelled run's chunk messages would otherwise still be queued ahead of the next
                # size's run, each skipped in turn before its planning could start.
                purge_queues(ini)
                measured[size] = {
                    "first_chunk": times["first_chunk"].timestamp() - posted_at,
                    "planning_started": times["planning"].timestamp() - posted_at,
                    "chunks": times["chunks"],
                    "peak_rss": peak,
                    "planning_statement": time_planning_statement(engine, size),
                }
                log(f"{NAME}: {size:,} products: {measured[size]}")
                result.check(
                    f"{size:,} products: the run was cancelled, every chunk accounted for",
                    finished["status"] == "cancelled" and finished["chunks"]["remaining"] == 0,
                    f"status {finished['status']}, chunks {finished['chunks']}",
                )
                result.check(
                    f"{size:,} products: {size // CHUNK:,} chunks planned",
                    times["chunks"] == -(-size // CHUNK),
                    f"{times['chunks']} chunks",
                )

    largest = sizes[-1]
    for size in sizes:
        figures = measured[size]
        target = ""
        if size == largest:
            met = figures["first_chunk"] <= TARGET_FIRST_CHUNK_SECONDS
            target = f"; target ≤ {TARGET_FIRST_CHUNK_SECONDS:g} s: {'met' if met else 'NOT met'}"
        result.figure(
            f"dispatch, {size:,} products",
            f"{figures['first_chunk']:.2f} s to the first chunk",
            f"POST to the first chunk's start in the ledger ({figures['chunks']:,} chunks of {CHUNK}){target};"
            f" the worker began planning {figures['planning_started']:.2f} s after the POST; the planning"
            f" statement alone takes {figures['planning_statement']:.2f} s; peak RSS of a worker process"
            f" {figures['peak_rss']:.0f} MiB (fresh workers)",
        )
    return result


def _sizes(value: str) -> list[int]:
    return [int(part.replace("_", "")) for part in value.split(",") if part]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The dispatch benchmark alone (make bench runs all of them).")
    parser.add_argument("--sizes", type=_sizes, default=list(SIZES),
                        help="products per warehouse, comma-separated (default: %(default)s)")
    args = parser.parse_args(argv)
    return common.run_alone(run, sizes=args.sizes)


if __name__ == "__main__":
    sys.exit(main())

"""How a run is cut into chunks and carried out, through the real path and through the ledger.

The real path: POST a run, the embedded worker plans it (processWholeWarehouse), does each chunk
(processSomeProducts) and finishes it (processFinished). The ledger tests call ``warehouse.ledger``
directly, to pin down the exactly-once rules the tasks rely on.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Select, delete, select
from webtest import TestApp

from warehouse import ledger, operations
from warehouse.models import ChunkStatus, Product, Run, RunChunk, RunStatus, Warehouse
from warehouse.operations import ChunkOutcome, ChunkWork, Operation

pytestmark = pytest.mark.timeout(120)

CENT = Decimal("0.01")


# --- helpers ---------------------------------------------------------------------------------------


def start_run(testapp: TestApp, headers: dict[str, str], code: str, **body: Any) -> int:
    response = testapp.post_json(
        f"/api/warehouses/{code}/runs", {"operation": "valuation", **body}, headers=headers, status=202
    )
    return response.json["id"]


def chunks_of(db: Any, run_id: int) -> list[RunChunk]:
    return db.scalars(select(RunChunk).where(RunChunk.run_id == run_id).order_by(RunChunk.seq))


def product_ids(db: Any, warehouse_id: int) -> list[int]:
    return db.scalars(select(Product.id).where(Product.warehouse_id == warehouse_id).order_by(Product.id))


def assert_chunks_partition(chunks: list[RunChunk], ids: list[int], chunk_size: int) -> None:
    """The chunks cut ``ids`` (the run's items, ascending) into consecutive runs of ``chunk_size``."""
    expected_count = -(-len(ids) // chunk_size)
    assert len(chunks) == expected_count
    assert [chunk.seq for chunk in chunks] == list(range(expected_count))
    covered: list[int] = []
    previous_end = None
    for number, chunk in enumerate(chunks):
        assert chunk.start_id <= chunk.end_id
        if previous_end is not None:
            assert chunk.start_id > previous_end, "chunk ranges overlap"
        previous_end = chunk.end_id
        inside = ids[bisect.bisect_left(ids, chunk.start_id) : bisect.bisect_right(ids, chunk.end_id)]
        # Keyset bounds are real item ids: the first and last of the chunk.
        assert inside[0] == chunk.start_id and inside[-1] == chunk.end_id
        assert chunk.item_count == len(inside)
        if number < len(chunks) - 1:
            assert chunk.item_count == chunk_size
        else:
            assert 1 <= chunk.item_count <= chunk_size
        covered += inside
    assert covered == ids, "the chunks' union must be every item exactly once"
    assert sum(chunk.item_count for chunk in chunks) == len(ids)


def assert_chunks_done(chunks: list[RunChunk]) -> None:
    for chunk in chunks:
        assert chunk.status == ChunkStatus.DONE
        assert chunk.attempts == 1
        assert chunk.items_done == chunk.item_count and chunk.items_failed == 0
        assert chunk.worker_hostname and chunk.finished_at is not None and chunk.error is None


def assert_valued(db: Any, warehouse_id: int, run: Mapping[str, Any]) -> None:
    """Every product of the warehouse is valued, and the run's result adds them up."""
    rows = db.rows(
        select(
            Product.qty_on_hand, Product.unit_cost, Product.reorder_point, Product.stock_value, Product.needs_reorder
        ).where(Product.warehouse_id == warehouse_id)
    )
    total = Decimal(0)
    reorder = 0
    for qty, unit_cost, reorder_point, stock_value, needs_reorder in rows:
        expected_value = (qty * Decimal(unit_cost)).quantize(CENT)
        assert stock_value == expected_value
        assert needs_reorder is (qty <= reorder_point)
        total += expected_value
        reorder += qty <= reorder_point
    assert run["result"]["total_stock_value"] == str(total.quantize(CENT))
    assert run["result"]["products_needing_reorder"] == reorder
    assert run["result"]["items_processed"] == len(rows)
    assert run["result"]["items_failed"] == 0


# --- chunk boundaries through the real path ----------------------------------------------------------


@pytest.mark.parametrize(
    ("products", "chunks"),
    [
        (0, 0),
        (1, 1),
        (499, 1),
        (500, 1),
        (501, 2),
        (10_001, 21),
    ],
)
def test_run_cuts_products_into_chunks_of_500(
    products: int, chunks: int, testapp: TestApp, operator: dict[str, str], db: Any, wait_for_run: Any
) -> None:
    warehouse = db.add_warehouse()
    ids = db.add_products(warehouse.id, products)

    run_id = start_run(testapp, operator, warehouse.code, chunk_size=500)
    run = wait_for_run(testapp, run_id, timeout=30 if products else 3)

    assert run["status"] == "succeeded"
    assert run["chunks"] == {"total": chunks, "done": chunks, "failed": 0, "skipped": 0, "remaining": 0}
    assert run["items"] == {"total": products, "done": products, "failed": 0, "remaining": 0}
    assert run["result"] is not None
    stored = chunks_of(db, run_id)
    assert_chunks_partition(stored, ids, 500)
    assert_chunks_done(stored)
    assert db.scalar(select(Run.last_item_id).where(Run.id == run_id)) == (ids[-1] if ids else None)
    assert_valued(db, warehouse.id, run)


def test_chunks_follow_ids_across_large_gaps(
    testapp: TestApp, operator: dict[str, str], db: Any, wait_for_run: Any
) -> None:
    warehouse = db.add_warehouse()
    dense = db.add_products(warehouse.id, 37 * 60)
    kept = dense[::37]
    db.execute(delete(Product).where(Product.id.in_(set(dense) - set(kept))))
    far = db.max_product_id() + 100_000
    db.add_products(warehouse.id, 40, ids=[far + 3 * i for i in range(40)])
    ids = product_ids(db, warehouse.id)
    assert len(ids) == 100

    run = wait_for_run(testapp, start_run(testapp, operator, warehouse.code, chunk_size=7))

    assert run["status"] == "succeeded"
    assert run["chunks"]["total"] == 15 and run["items"]["total"] == 100
    stored = chunks_of(db, run["id"])
    assert_chunks_partition(stored, ids, 7)
    assert_chunks_done(stored)
    # One chunk straddles the 100,000-id gap and still holds exactly 7 products.
    assert any(chunk.start_id < far <= chunk.end_id and chunk.item_count == 7 for chunk in stored)
    assert_valued(db, warehouse.id, run)


def test_chunks_count_only_the_warehouse_s_own_products_when_ids_interleave(
    testapp: TestApp, operator: dict[str, str], db: Any, wait_for_run: Any
) -> None:
    ours, theirs = db.add_warehouse(), db.add_warehouse()
    for _ in range(30):  # alternate: every range of our ids also holds ids of the other warehouse
        db.add_products(ours.id, 1)
        db.add_products(theirs.id, 1)

    run = wait_for_run(testapp, start_run(testapp, operator, ours.code, chunk_size=10))

    assert run["status"] == "succeeded"
    assert_chunks_partition(chunks_of(db, run["id"]), product_ids(db, ours.id), 10)
    assert_valued(db, ours.id, run)
    untouched = db.scalars(select(Product.stock_value).where(Product.warehouse_id == theirs.id))
    assert untouched == [None] * 30


def test_chunk_size_one_makes_one_chunk_per_product(
    testapp: TestApp, operator: dict[str, str], db: Any, wait_for_run: Any
) -> None:
    warehouse = db.add_warehouse()
    ids = db.add_products(warehouse.id, 25)

    run = wait_for_run(testapp, start_run(testapp, operator, warehouse.code, chunk_size=1))

    assert run["status"] == "succeeded"
    assert run["chunks"] == {"total": 25, "done": 25, "failed": 0, "skipped": 0, "remaining": 0}
    stored = chunks_of(db, run["id"])
    assert [(chunk.start_id, chunk.end_id) for chunk in stored] == [(i, i) for i in ids]
    assert_chunks_partition(stored, ids, 1)
    assert_valued(db, warehouse.id, run)


def test_valuation_is_exact_to_the_cent_for_large_values(
    testapp: TestApp, operator: dict[str, str], db: Any, wait_for_run: Any
) -> None:
    warehouse = db.add_warehouse()
    # The largest values the API accepts (qty_on_hand <= 10,000,000, unit_cost <= 1,000,000), whose
    # products SQLite's floating point must still get right to the cent.
    large = [(10_000_000, Decimal("999999.99"), 0), (9_999_999, Decimal("1000000.00"), 0), (3, Decimal("0.10"), 5)]
    db.add_products(
        warehouse.id,
        len(large),
        values=lambda i: dict(zip(("qty_on_hand", "unit_cost", "reorder_point"), large[i])),
    )

    run = wait_for_run(testapp, start_run(testapp, operator, warehouse.code))

    assert run["status"] == "succeeded"
    assert_valued(db, warehouse.id, run)


# --- chunks run side by side in the embedded worker -------------------------------------------------


class SlowProbe(Operation):
    """Covers the warehouse's products; each chunk sleeps, and the probe counts chunks in progress."""

    name = "slow_probe"
    description = "test probe: how many chunks run at once"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0
        self.calls = 0

    def item_ids(self, warehouse_id: int, today: dt.date) -> Select[tuple[int]]:
        return select(Product.id).where(Product.warehouse_id == warehouse_id)

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            time.sleep(self.seconds)
        finally:
            with self.lock:
                self.running -= 1
        return ChunkOutcome(items_done=work.end_id - work.start_id + 1)

    def summarise(self, summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return {}


@pytest.fixture
def slow_probe() -> Iterator[SlowProbe]:
    probe = operations.register(SlowProbe(seconds=0.3))
    try:
        yield probe
    finally:
        operations._registry.pop(probe.name, None)


def test_embedded_worker_runs_at_least_two_chunks_at_once(
    slow_probe: SlowProbe, testapp: TestApp, operator: dict[str, str], db: Any, wait_for_run: Any
) -> None:
    warehouse = db.add_warehouse()
    db.add_products(warehouse.id, 2_000)

    run_id = start_run(testapp, operator, warehouse.code, operation="slow_probe", chunk_size=250)
    run = wait_for_run(testapp, run_id)

    assert run["status"] == "succeeded"
    assert slow_probe.calls == 8
    assert slow_probe.max_running >= 2


# --- the ledger, called directly -------------------------------------------------------------------


def create_run(db: Any, warehouse_id: int, chunk_size: int, tolerated: Decimal = Decimal(0)) -> int:
    with db.session() as session:
        run = ledger.create_run(
            session, session.get_one(Warehouse, warehouse_id), "valuation", chunk_size, tolerated_failure_percent=tolerated
        )
        session.flush()
        return run.id


def plan(db: Any, run_id: int) -> list[ledger.ChunkBounds] | None:
    with db.session() as session:
        return ledger.plan_run(session, run_id)


def process(db: Any, run_id: int, start_id: int, task_id: str = "task-1") -> ChunkOutcome | None:
    """What processSomeProducts does: claim in one transaction, work and record in another."""
    with db.session() as session:
        claimed = ledger.claim_chunk(session, run_id, start_id, "test-host", task_id)
    if claimed is None:
        return None
    with db.session() as session:
        return ledger.do_chunk(session, claimed, {})


def finalise(db: Any, run_id: int) -> str:
    with db.session() as session:
        return ledger.finalise_run(session, run_id)


def get_run(db: Any, run_id: int) -> Run:
    return db.scalar(select(Run).where(Run.id == run_id))


def test_products_added_after_planning_are_not_part_of_the_run(db: Any) -> None:
    warehouse = db.add_warehouse()
    planned_ids = db.add_products(warehouse.id, 30)
    run_id = create_run(db, warehouse.id, chunk_size=10)

    bounds = plan(db, run_id)
    late_ids = db.add_products(warehouse.id, 5)
    for chunk in bounds:
        assert process(db, run_id, chunk.start_id).items_done == 10
    status = finalise(db, run_id)

    assert status == RunStatus.SUCCEEDED
    assert [(chunk.start_id, chunk.end_id) for chunk in bounds] == [
        (planned_ids[0], planned_ids[9]),
        (planned_ids[10], planned_ids[19]),
        (planned_ids[20], planned_ids[29]),
    ]
    run = get_run(db, run_id)
    assert (run.items_total, run.items_done, run.chunks_total, run.chunks_done) == (30, 30, 3, 3)
    assert run.last_item_id == planned_ids[-1]
    assert run.result["items_processed"] == 30
    assert min(late_ids) > run.last_item_id
    assert db.scalars(select(Product.stock_value).where(Product.id.in_(late_ids))) == [None] * 5
    assert None not in db.scalars(select(Product.stock_value).where(Product.id.in_(planned_ids)))


def test_planning_twice_plans_once(db: Any) -> None:
    warehouse = db.add_warehouse()
    db.add_products(warehouse.id, 12)
    run_id = create_run(db, warehouse.id, chunk_size=5)

    assert len(plan(db, run_id)) == 3
    assert plan(db, run_id) is None
    assert len(db.scalars(select(RunChunk.id).where(RunChunk.run_id == run_id))) == 3
    assert get_run(db, run_id).status == RunStatus.RUNNING


def test_a_run_with_no_items_plans_no_chunks_and_finalises_as_succeeded(db: Any) -> None:
    warehouse = db.add_warehouse()
    run_id = create_run(db, warehouse.id, chunk_size=500)

    assert plan(db, run_id) == []
    assert finalise(db, run_id) == RunStatus.SUCCEEDED

    run = get_run(db, run_id)
    assert (run.chunks_total, run.items_total, run.last_item_id) == (0, 0, None)
    assert run.result == {
        "total_stock_value": "0.00",
        "products_needing_reorder": 0,
        "items_processed": 0,
        "items_failed": 0,
    }


def test_processing_a_chunk_twice_does_the_work_once(db: Any) -> None:
    warehouse = db.add_warehouse()
    ids = db.add_products(warehouse.id, 8)
    run_id = create_run(db, warehouse.id, chunk_size=5)
    first = plan(db, run_id)[0]

    outcome = process(db, run_id, first.start_id)
    counters = get_run(db, run_id)
    chunk = chunks_of(db, run_id)[0]
    again = process(db, run_id, first.start_id)

    assert outcome is not None and outcome.items_done == 5
    assert again is None
    after = get_run(db, run_id)
    assert (after.chunks_done, after.chunks_failed, after.items_done, after.items_failed) == (1, 0, 5, 0)
    assert (after.chunks_done, after.items_done) == (counters.chunks_done, counters.items_done)
    assert chunks_of(db, run_id)[0].attempts == chunk.attempts == 1
    # The second chunk is untouched.
    assert db.scalars(select(Product.stock_value).where(Product.id.in_(ids[5:]))) == [None] * 3


def test_a_chunk_failed_for_good_is_not_processed_or_failed_again(db: Any) -> None:
    warehouse = db.add_warehouse()
    db.add_products(warehouse.id, 4)
    run_id = create_run(db, warehouse.id, chunk_size=4)
    (only,) = plan(db, run_id)

    with db.session() as session:
        assert ledger.fail_chunk(session, run_id, only.start_id, "boom") is True
    with db.session() as session:
        assert ledger.fail_chunk(session, run_id, only.start_id, "boom again") is False
    assert process(db, run_id, only.start_id) is None

    run = get_run(db, run_id)
    assert (run.chunks_failed, run.chunks_done, run.items_failed, run.items_done) == (1, 0, 4, 0)
    assert chunks_of(db, run_id)[0].error == "boom"
    assert finalise(db, run_id) == RunStatus.FAILED


def test_finalise_waits_while_a_chunk_is_unfinished_then_finalises_once(db: Any) -> None:
    warehouse = db.add_warehouse()
    db.add_products(warehouse.id, 15)
    run_id = create_run(db, warehouse.id, chunk_size=5)
    bounds = plan(db, run_id)
    for chunk in bounds[:2]:
        process(db, run_id, chunk.start_id)

    assert finalise(db, run_id) == ledger.FinaliseResult.WAIT
    waiting = get_run(db, run_id)
    assert waiting.status == RunStatus.RUNNING and waiting.result is None and waiting.finished_at is None

    process(db, run_id, bounds[2].start_id)
    assert finalise(db, run_id) == RunStatus.SUCCEEDED
    finished = get_run(db, run_id)
    assert finalise(db, run_id) == ledger.FinaliseResult.DONE_ALREADY

    again = get_run(db, run_id)
    assert again.status == RunStatus.SUCCEEDED
    assert again.result == finished.result and again.result["items_processed"] == 15
    assert again.finished_at == finished.finished_at


def test_a_second_active_run_of_the_operation_is_refused(db: Any) -> None:
    warehouse = db.add_warehouse()
    first = create_run(db, warehouse.id, chunk_size=5)

    with pytest.raises(ledger.ActiveRunExists) as refused:
        create_run(db, warehouse.id, chunk_size=5)

    assert refused.value.run_id == first


def run_with(
    status: str = RunStatus.RUNNING,
    items_total: int = 100,
    items_failed: int = 0,
    chunks_failed: int = 0,
    tolerated: str = "0",
) -> Run:
    return Run(
        status=status,
        items_total=items_total,
        items_done=items_total - items_failed,
        items_failed=items_failed,
        chunks_failed=chunks_failed,
        tolerated_failure_percent=Decimal(tolerated),
    )


@pytest.mark.parametrize(
    ("run", "status"),
    [
        (run_with(), RunStatus.SUCCEEDED),
        (run_with(items_total=0), RunStatus.SUCCEEDED),
        (run_with(items_failed=1, chunks_failed=1), RunStatus.FAILED),
        (run_with(items_failed=1, chunks_failed=1, tolerated="1"), RunStatus.PARTIALLY_FAILED),
        (run_with(items_failed=1, chunks_failed=1, tolerated="0.99"), RunStatus.FAILED),
        (run_with(items_failed=5, chunks_failed=1, tolerated="5"), RunStatus.PARTIALLY_FAILED),
        (run_with(items_failed=6, chunks_failed=2, tolerated="5"), RunStatus.FAILED),
        (run_with(items_total=80, items_failed=2, chunks_failed=1, tolerated="2.5"), RunStatus.PARTIALLY_FAILED),
        (run_with(items_total=80, items_failed=3, chunks_failed=1, tolerated="2.5"), RunStatus.FAILED),
        (run_with(items_failed=100, chunks_failed=4, tolerated="50"), RunStatus.FAILED),
        (run_with(items_total=0, chunks_failed=1, tolerated="100"), RunStatus.FAILED),
        (run_with(status=RunStatus.CANCELLING, items_failed=100, chunks_failed=4), RunStatus.CANCELLED),
        (run_with(status=RunStatus.CANCELLING), RunStatus.CANCELLED),
    ],
)
def test_decide_status_against_tolerated_failure_percent(run: Run, status: RunStatus) -> None:
    assert ledger.decide_status(run) == status

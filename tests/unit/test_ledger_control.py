"""Cancel, failure thresholds, claims, resume and the reconciler, through ``warehouse.ledger`` directly.

Like the ledger tests in test_chunking.py, these call the ledger on the SQLite test database in short
transactions of their own (one at a time: on SQLite every transaction takes the write lock at BEGIN),
with no worker involved. The reconciler's tests use a database of their own, so that what it finds
is exactly what the test put there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Select, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

import tasks.reconcile
from tasks.reconcile import LiveWork, _run_id_of, live_work, reconcile
from test_chunking import chunks_of, finalise, get_run, plan
from tests.sqlite_databases import own_sqlite_database
from warehouse import ledger, operations
from warehouse.models import ChunkStatus, Product, Run, RunChunk, RunItemFailure, RunStatus, Warehouse
from warehouse.operations import ChunkOutcome, ChunkWork, ItemFailure, Operation

pytestmark = pytest.mark.timeout(60)

TERMINAL = [RunStatus.SUCCEEDED, RunStatus.PARTIALLY_FAILED, RunStatus.FAILED, RunStatus.CANCELLED]
LONG_AGO = dt.timedelta(hours=1)


# --- helpers ---------------------------------------------------------------------------------------


def new_run(db: Any, warehouse_id: int, operation: str = "valuation", chunk_size: int = 10, tolerated: str = "0") -> int:
    with db.session() as session:
        run = ledger.create_run(
            session, session.get_one(Warehouse, warehouse_id), operation, chunk_size, Decimal(tolerated)
        )
        session.flush()
        return run.id


def planned_run(
    db: Any, products: int, chunk_size: int, operation: str = "valuation", tolerated: str = "0"
) -> tuple[list[int], int, list[ledger.ChunkBounds]]:
    """A warehouse of ``products`` products and a run of ``operation`` over it, planned: (ids, run id, chunks)."""
    warehouse = db.add_warehouse()
    ids = db.add_products(warehouse.id, products)
    run_id = new_run(db, warehouse.id, operation, chunk_size, tolerated)
    return ids, run_id, plan(db, run_id)


def add_ended_run(db: Any, status: str) -> int:
    warehouse = db.add_warehouse()
    with db.session() as session:
        run = Run(warehouse_id=warehouse.id, operation="valuation", status=status, chunk_size=10)
        session.add(run)
        session.flush()
        return run.id


def claim(db: Any, run_id: int, start_id: int, task_id: str) -> ledger.ClaimedChunk | None:
    with db.session() as session:
        return ledger.claim_chunk(session, run_id, start_id, "test-host", task_id)


def work(db: Any, claimed: ledger.ClaimedChunk) -> ChunkOutcome:
    with db.session() as session:
        return ledger.do_chunk(session, claimed, {})


def cancel(db: Any, run_id: int) -> Run:
    with db.session() as session:
        return ledger.cancel_run(session, run_id)


def stock_values(db: Any, ids: Iterable[int]) -> list[Any]:
    return db.scalars(select(Product.stock_value).where(Product.id.in_(list(ids))).order_by(Product.id))


def chunk_statuses(db: Any, run_id: int) -> list[str]:
    return [chunk.status for chunk in chunks_of(db, run_id)]


def backdate_claim(db: Any, run_id: int, start_id: int, ago: dt.timedelta = LONG_AGO) -> None:
    db.execute(
        update(RunChunk)
        .where(RunChunk.run_id == run_id, RunChunk.start_id == start_id)
        .values(started_at=ledger.utcnow() - ago)
    )


# --- cancel_run ------------------------------------------------------------------------------------


def test_cancelling_a_pending_run_cancels_it_at_once(db: Any) -> None:
    warehouse = db.add_warehouse()
    run_id = new_run(db, warehouse.id)

    returned = cancel(db, run_id)

    run = get_run(db, run_id)
    assert returned.status == run.status == RunStatus.CANCELLED
    assert run.cancel_requested_at is not None and run.finished_at is not None
    assert run.started_at is None and run.result is None
    # Nothing was planned: a processWholeWarehouse arriving now finds nothing to plan.
    assert plan(db, run_id) is None
    assert chunks_of(db, run_id) == []


def test_cancelling_a_running_run_makes_it_cancelling_and_again_leaves_it_so(db: Any) -> None:
    _ids, run_id, _chunks = planned_run(db, products=20, chunk_size=10)

    assert cancel(db, run_id).status == RunStatus.CANCELLING
    first = get_run(db, run_id)
    assert cancel(db, run_id).status == RunStatus.CANCELLING

    again = get_run(db, run_id)
    assert first.status == again.status == RunStatus.CANCELLING
    assert first.cancel_requested_at is not None and first.finished_at is None
    assert again.cancel_requested_at == first.cancel_requested_at
    assert again.finished_at is None and again.result is None


@pytest.mark.parametrize("status", TERMINAL)
def test_cancelling_an_ended_run_raises_run_ended(status: str, db: Any) -> None:
    run_id = add_ended_run(db, status)

    with pytest.raises(ledger.RunEnded) as ended:
        cancel(db, run_id)

    assert ended.value.status == status
    run = get_run(db, run_id)
    assert run.status == status and run.cancel_requested_at is None


@pytest.mark.parametrize(
    "decide",
    [ledger.cancel_run, lambda session, run_id: ledger.prepare_resume(session, run_id, ledger.utcnow())],
    ids=["cancel_run", "prepare_resume"],
)
def test_cancel_and_resume_decide_on_the_run_as_committed_not_on_a_copy_loaded_earlier(decide: Any, db: Any) -> None:
    _ids, run_id, _chunks = planned_run(db, products=5, chunk_size=5)

    with pytest.raises(ledger.RunEnded):
        with db.session() as session:
            loaded = session.get_one(Run, run_id)  # noqa: F841  (run_or_404's load; the view keeps it)
            # What another transaction committing on PostgreSQL looks like to this one's next read:
            # the row changes underneath the session's identity map.
            session.connection().exec_driver_sql("UPDATE runs SET status = 'succeeded' WHERE id = ?", (run_id,))
            decide(session, run_id)


# --- after a cancel --------------------------------------------------------------------------------


def test_after_cancel_no_chunk_starts_and_finalise_waits_for_the_running_one(db: Any) -> None:
    ids, run_id, chunks = planned_run(db, products=40, chunk_size=10)
    running = claim(db, run_id, chunks[0].start_id, "t-running")
    assert running is not None

    cancel(db, run_id)
    refused = claim(db, run_id, chunks[1].start_id, "t-late")

    assert refused is None
    assert chunk_statuses(db, run_id) == [ChunkStatus.RUNNING, ChunkStatus.SKIPPED, ChunkStatus.PENDING, ChunkStatus.PENDING]
    assert get_run(db, run_id).chunks_skipped == 1

    # The callback skips whatever never started, and waits for the chunk already running.
    assert finalise(db, run_id) == ledger.FinaliseResult.WAIT
    assert chunk_statuses(db, run_id) == [ChunkStatus.RUNNING] + [ChunkStatus.SKIPPED] * 3
    waiting = get_run(db, run_id)
    assert (waiting.status, waiting.chunks_skipped, waiting.finished_at) == (RunStatus.CANCELLING, 3, None)

    assert work(db, running).items_done == 10  # a chunk that started before the cancel finishes
    assert finalise(db, run_id) == RunStatus.CANCELLED
    ended = get_run(db, run_id)
    assert finalise(db, run_id) == ledger.FinaliseResult.DONE_ALREADY

    run = get_run(db, run_id)
    assert run.status == RunStatus.CANCELLED and run.finished_at == ended.finished_at is not None
    assert (run.chunks_total, run.chunks_done, run.chunks_failed, run.chunks_skipped) == (4, 1, 0, 3)
    assert (run.items_done, run.items_failed) == (10, 0)
    assert run.result == ended.result and run.result["items_processed"] == 10
    assert None not in stock_values(db, ids[:10])
    assert stock_values(db, ids[10:]) == [None] * 30


def test_a_skipped_chunk_is_not_claimed_again(db: Any) -> None:
    _ids, run_id, chunks = planned_run(db, products=10, chunk_size=10)
    cancel(db, run_id)

    assert claim(db, run_id, chunks[0].start_id, "t1") is None
    assert claim(db, run_id, chunks[0].start_id, "t1") is None

    assert get_run(db, run_id).chunks_skipped == 1
    assert chunks_of(db, run_id)[0].attempts == 0


# --- items that fail, against the run's threshold ----------------------------------------------------


class FailsSomeItems(Operation):
    """Covers the warehouse's products; fails the items in ``failing``, does nothing to the others."""

    name = "test_fails_some_items"
    description = "test probe: reports some items as failed"

    def __init__(self) -> None:
        self.failing: set[int] = set()

    def item_ids(self, warehouse_id: int, today: dt.date) -> Select[tuple[int]]:
        return select(Product.id).where(Product.warehouse_id == warehouse_id)

    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        ids = work.session.scalars(
            select(Product.id).where(Product.warehouse_id == work.warehouse_id, self.in_chunk(Product.id, work))
        ).all()
        failures = [ItemFailure(item_id, f"item {item_id}: refused by the probe") for item_id in ids if item_id in self.failing]
        return ChunkOutcome(
            items_done=len(ids) - len(failures),
            items_failed=len(failures),
            summary={"seen": len(ids)},
            failures=failures,
        )

    def summarise(self, summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return {"seen": sum(summary.get("seen", 0) for summary in summaries)}


@pytest.fixture
def fails_some_items() -> Iterator[FailsSomeItems]:
    probe = operations.register(FailsSomeItems())
    try:
        yield probe
    finally:
        operations._registry.pop(probe.name, None)


def every_tenth(ids: list[int]) -> set[int]:
    """Items 10, 20, 30, ... of the run: one in each chunk of ten, 10% of the run."""
    return {item_id for position, item_id in enumerate(ids, start=1) if position % 10 == 0}


def failures_of(db: Any, run_id: int) -> list[tuple[int, int, str]]:
    return [
        tuple(row)
        for row in db.rows(
            select(RunItemFailure.item_id, RunItemFailure.chunk_id, RunItemFailure.error)
            .where(RunItemFailure.run_id == run_id)
            .order_by(RunItemFailure.item_id)
        )
    ]


def test_items_failing_past_the_threshold_stop_the_run_and_fail_it(db: Any, fails_some_items: FailsSomeItems) -> None:
    ids, run_id, chunks = planned_run(db, products=50, chunk_size=10, operation=fails_some_items.name, tolerated="5")
    fails_some_items.failing = every_tenth(ids)

    # 1 of 50 failed (2%), then 2 (4%), then 3 (6%, past 5%): the fourth chunk does not start.
    for chunk in chunks[:3]:
        outcome = work(db, claim(db, run_id, chunk.start_id, f"t-{chunk.start_id}"))
        assert (outcome.items_done, outcome.items_failed) == (9, 1)
    assert ledger.exceeds_threshold(get_run(db, run_id))
    assert claim(db, run_id, chunks[3].start_id, "t-4") is None

    assert finalise(db, run_id) == RunStatus.FAILED

    stored = chunks_of(db, run_id)
    assert [chunk.status for chunk in stored] == [ChunkStatus.DONE] * 3 + [ChunkStatus.SKIPPED] * 2
    assert [(chunk.items_done, chunk.items_failed) for chunk in stored[:3]] == [(9, 1)] * 3
    run = get_run(db, run_id)
    assert (run.status, run.items_done, run.items_failed) == (RunStatus.FAILED, 27, 3)
    assert (run.chunks_done, run.chunks_failed, run.chunks_skipped) == (3, 0, 2)
    assert run.result == {"seen": 30, "items_processed": 27, "items_failed": 3}
    assert failures_of(db, run_id) == [
        (ids[9], stored[0].id, f"item {ids[9]}: refused by the probe"),
        (ids[19], stored[1].id, f"item {ids[19]}: refused by the probe"),
        (ids[29], stored[2].id, f"item {ids[29]}: refused by the probe"),
    ]


def test_items_failing_within_the_threshold_are_recorded_and_the_run_partially_fails(
    db: Any, fails_some_items: FailsSomeItems
) -> None:
    ids, run_id, chunks = planned_run(db, products=50, chunk_size=10, operation=fails_some_items.name, tolerated="30")
    # One in ten everywhere, and the whole last chunk: 14 of 50 (28%).
    fails_some_items.failing = every_tenth(ids) | set(ids[40:])

    for chunk in chunks:
        claimed = claim(db, run_id, chunk.start_id, f"t-{chunk.start_id}")
        assert claimed is not None
        work(db, claimed)

    assert finalise(db, run_id) == RunStatus.PARTIALLY_FAILED
    stored = chunks_of(db, run_id)
    # A chunk whose every item failed is a failed chunk; the others are done with some failures.
    assert [chunk.status for chunk in stored] == [ChunkStatus.DONE] * 4 + [ChunkStatus.FAILED]
    assert stored[4].items_failed == 10 and stored[4].items_done == 0
    run = get_run(db, run_id)
    assert (run.items_done, run.items_failed) == (36, 14)
    assert (run.chunks_done, run.chunks_failed, run.chunks_skipped) == (4, 1, 0)
    # The operation's summary adds up the done chunks only; the counts cover every chunk.
    assert run.result == {"seen": 40, "items_processed": 36, "items_failed": 14}
    assert [item_id for item_id, _chunk, _error in failures_of(db, run_id)] == sorted(fails_some_items.failing)


# --- who may claim a running chunk -------------------------------------------------------------------


def test_a_running_chunk_is_taken_over_only_by_a_redelivery_and_the_old_attempt_is_rolled_back(
    db: Any,
) -> None:
    ids, run_id, chunks = planned_run(db, products=10, chunk_size=5)
    start = chunks[0].start_id
    first = claim(db, run_id, start, "t1")
    assert first is not None and first.attempt == 1
    # The first attempt's session: it begins its transaction only when it first writes.
    old_session = db.session_factory()
    try:
        assert claim(db, run_id, start, "t2") is None  # another message: leave the chunk alone
        held = chunks_of(db, run_id)[0]
        assert (held.status, held.task_id, held.attempts) == (ChunkStatus.RUNNING, "t1", 1)

        second = claim(db, run_id, start, "t1")  # the same message redelivered: its first execution died
        assert second is not None and second.attempt == 2

        with pytest.raises(ledger.ChunkLost):
            ledger.do_chunk(old_session, first, {})
        old_session.rollback()
    finally:
        old_session.close()

    assert stock_values(db, ids[:5]) == [None] * 5  # the old attempt's valuation was rolled back
    run = get_run(db, run_id)
    assert (run.chunks_done, run.items_done) == (0, 0)

    assert work(db, second).items_done == 5
    assert None not in stock_values(db, ids[:5])
    assert stock_values(db, ids[5:]) == [None] * 5
    done = chunks_of(db, run_id)[0]
    assert (done.status, done.attempts, done.items_done) == (ChunkStatus.DONE, 2, 5)
    run = get_run(db, run_id)
    assert (run.chunks_done, run.items_done) == (1, 5)
    with pytest.raises(ledger.ChunkLost):
        work(db, first)  # still lost after the chunk finished
    assert claim(db, run_id, start, "t1") is None  # and a done chunk is never claimed again


# --- prepare_resume --------------------------------------------------------------------------------


def resume(db: Any, run_id: int, stale: dt.timedelta = dt.timedelta(minutes=5)) -> ledger.ResumePlan:
    with db.session() as session:
        return ledger.prepare_resume(session, run_id, claimed_before=ledger.utcnow() - stale)


def test_resuming_a_pending_run_restarts_it(db: Any) -> None:
    warehouse = db.add_warehouse()
    run_id = new_run(db, warehouse.id)

    assert resume(db, run_id) == ledger.ResumePlan(run_id, restart=True, chunks=())
    assert get_run(db, run_id).status == RunStatus.PENDING


def test_resuming_a_running_run_releases_abandoned_chunks_and_lists_what_never_finished(db: Any) -> None:
    ids, run_id, chunks = planned_run(db, products=40, chunk_size=10)
    abandoned = claim(db, run_id, chunks[0].start_id, "t-abandoned")
    backdate_claim(db, run_id, chunks[0].start_id)
    claim(db, run_id, chunks[1].start_id, "t-recent")
    work(db, claim(db, run_id, chunks[3].start_id, "t-done"))
    touched_before = get_run(db, run_id).updated_at

    resumed = resume(db, run_id)

    assert resumed == ledger.ResumePlan(run_id, restart=False, chunks=(chunks[0], chunks[2]))
    stored = chunks_of(db, run_id)
    assert [chunk.status for chunk in stored] == [
        ChunkStatus.PENDING, ChunkStatus.RUNNING, ChunkStatus.PENDING, ChunkStatus.DONE,
    ]
    assert stored[0].task_id is None and stored[1].task_id == "t-recent"
    assert get_run(db, run_id).updated_at >= touched_before

    # The re-sent chunk is claimed by its new message; the abandoned attempt can no longer finish.
    again = claim(db, run_id, chunks[0].start_id, "t-new")
    assert again is not None and again.attempt == 2
    with pytest.raises(ledger.ChunkLost):
        work(db, abandoned)
    assert work(db, again).items_done == 10


def test_resuming_a_run_with_only_recent_claims_releases_nothing(db: Any) -> None:
    _ids, run_id, chunks = planned_run(db, products=20, chunk_size=10)
    claim(db, run_id, chunks[0].start_id, "t-recent")

    resumed = resume(db, run_id)

    assert resumed == ledger.ResumePlan(run_id, chunks=(chunks[1],))
    assert chunk_statuses(db, run_id) == [ChunkStatus.RUNNING, ChunkStatus.PENDING]


def test_resuming_a_cancelling_run_sends_no_chunks(db: Any) -> None:
    _ids, run_id, chunks = planned_run(db, products=30, chunk_size=10)
    claim(db, run_id, chunks[0].start_id, "t-abandoned")
    backdate_claim(db, run_id, chunks[0].start_id)
    cancel(db, run_id)

    resumed = resume(db, run_id)

    assert resumed == ledger.ResumePlan(run_id, restart=False, chunks=())
    # Its callback, sent instead, skips the rest (the released chunk included) and ends the run.
    assert finalise(db, run_id) == RunStatus.CANCELLED
    assert chunk_statuses(db, run_id) == [ChunkStatus.SKIPPED] * 3


@pytest.mark.parametrize("status", TERMINAL)
def test_resuming_an_ended_run_raises_run_ended(status: str, db: Any) -> None:
    run_id = add_ended_run(db, status)

    with pytest.raises(ledger.RunEnded) as ended:
        resume(db, run_id)

    assert ended.value.status == status


# --- the reconciler --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "run_id"),
    [
        ({"name": "processWholeWarehouse", "args": [7]}, 7),
        ({"name": "processSomeProducts", "args": [7, 100, 199]}, 7),
        ({"name": "processSomeProducts", "args": (7, 100, 199)}, 7),
        ({"name": "processFinished", "args": [["done", "skipped"], 7]}, 7),
        ({"name": "processFinished", "args": [[], 7]}, 7),
        ({"name": "reconcileRuns", "args": []}, None),
        ({"name": "someOtherTask", "args": [7]}, None),
        ({"name": "processWholeWarehouse", "args": []}, None),
        ({"name": "processWholeWarehouse", "args": None}, None),
        ({"name": "processWholeWarehouse"}, None),
        ({"name": "processWholeWarehouse", "args": ["7"]}, None),
        ({"args": [7]}, None),
    ],
)
def test_run_id_of_a_task_request(request_: dict[str, Any], run_id: int | None) -> None:
    assert _run_id_of(request_) == run_id


class FakeInspect:
    """Canned answers of ``app.control.inspect(...)``: a dict per worker, or None when nobody answers."""

    def __init__(self, workers: list[str], active: Any = None, reserved: Any = None, scheduled: Any = None) -> None:
        self.workers = workers
        self.answers = {"active": active, "reserved": reserved, "scheduled": scheduled}

    def ping(self) -> dict[str, Any] | None:
        return {worker: {"ok": "pong"} for worker in self.workers} or None

    def active(self) -> Any:
        return self.answers["active"]

    def reserved(self) -> Any:
        return self.answers["reserved"]

    def scheduled(self) -> Any:
        return self.answers["scheduled"]


class FakeControl:
    def __init__(self, inspect: FakeInspect) -> None:
        self._inspect = inspect
        self.inspect_calls: list[dict[str, Any]] = []

    def inspect(self, **options: Any) -> FakeInspect:
        self.inspect_calls.append(options)
        return self._inspect


class FakeCelery:
    def __init__(self, inspect: FakeInspect) -> None:
        self.control = FakeControl(inspect)


def task(name: str, *args: Any) -> dict[str, Any]:
    return {"id": f"id-{name}-{args}", "name": name, "args": list(args), "kwargs": {}}


def test_live_work_names_workers_and_the_runs_their_tasks_belong_to() -> None:
    app = FakeCelery(
        FakeInspect(
            ["a@host", "b@host"],
            active={"a@host": [task("processSomeProducts", 7, 1, 10), task("reconcileRuns")], "b@host": []},
            reserved={"b@host": [task("processFinished", ["done"], 8)]},
            # Scheduled (countdown) entries wrap the request.
            scheduled={"a@host": [{"eta": "2030-01-01T00:00:00", "priority": 0, "request": task("processWholeWarehouse", 9)}]},
        )
    )

    live = live_work(app)  # type: ignore[arg-type]

    assert live == LiveWork(hostnames={"a@host", "b@host"}, run_ids={7, 8, 9})
    assert app.control.inspect_calls[-1].get("limit") == 2  # wait for both answers, no longer


@pytest.mark.parametrize("workers", [[], None])
def test_live_work_without_workers_asks_nothing_more(workers: list[str] | None) -> None:
    inspect = FakeInspect([])
    if workers is None:
        inspect.ping = lambda: None  # type: ignore[method-assign]
    app = FakeCelery(inspect)

    assert live_work(app) == LiveWork()  # type: ignore[arg-type]
    assert len(app.control.inspect_calls) == 1


RECONCILE_SETTINGS = {
    "warehouse.reconcile_pending_after_seconds": "60",
    "warehouse.reconcile_stale_after_seconds": "300",
}


@pytest.fixture(scope="module")
def reconcile_factory(tmp_path_factory: pytest.TempPathFactory, make_settings: Any) -> Iterator[sessionmaker[Session]]:
    """A database of the reconciler tests' own: it looks at every run there is."""
    with own_sqlite_database(tmp_path_factory.mktemp("reconcile") / "reconcile.sqlite", make_settings) as factory:
        yield factory


@pytest.fixture
def ledger_db(reconcile_factory: sessionmaker[Session], db: Any) -> Any:
    """The reconciler's database, emptied, with the ``db`` helpers."""
    fresh = type(db)(reconcile_factory)
    fresh.execute(delete(Warehouse))  # runs, chunks and failures go with it (ON DELETE CASCADE)
    return fresh


@pytest.fixture
def resumed(monkeypatch: pytest.MonkeyPatch) -> list[ledger.ResumePlan]:
    """What the reconciler would send, instead of sending it."""
    plans: list[ledger.ResumePlan] = []

    def record(app: Any, plan: ledger.ResumePlan) -> int:
        plans.append(plan)
        return len(plan.chunks)

    monkeypatch.setattr(tasks.reconcile, "send_resume", record)
    return plans


def add_run_at(
    db: Any,
    status: str,
    created_ago: dt.timedelta,
    updated_ago: dt.timedelta | None = None,
    chunks: Iterable[tuple[str, dt.timedelta | None]] = (),
    now: dt.datetime | None = None,
) -> int:
    """A run created and last updated that long before ``now``, with chunks (status, claimed how long ago)."""
    now = now or ledger.utcnow()
    chunks = list(chunks)
    warehouse = db.add_warehouse()
    with db.session() as session:
        run = Run(
            warehouse_id=warehouse.id,
            operation="valuation",
            status=status,
            chunk_size=10,
            created_at=now - created_ago,
            started_at=None if status == RunStatus.PENDING else now - created_ago,
        )
        session.add(run)
        session.flush()
        for seq, (chunk_status, claimed_ago) in enumerate(chunks):
            session.add(
                RunChunk(
                    run_id=run.id, seq=seq, start_id=seq * 10 + 1, end_id=seq * 10 + 10, item_count=10,
                    status=chunk_status, attempts=1 if claimed_ago else 0,
                    task_id=f"task-{seq}" if claimed_ago else None,
                    started_at=now - claimed_ago if claimed_ago else None,
                )
            )
        session.flush()
        run_id = run.id
    # Last, and explicitly: any ORM update of the row would move updated_at to now.
    db.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(updated_at=now - (updated_ago if updated_ago is not None else created_ago), chunks_total=len(chunks))
    )
    return run_id


def bounds(*seqs: int) -> tuple[ledger.ChunkBounds, ...]:
    return tuple(ledger.ChunkBounds(seq * 10 + 1, seq * 10 + 10) for seq in seqs)


def test_reconcile_without_workers_sends_nothing_and_changes_nothing(
    ledger_db: Any, resumed: list[ledger.ResumePlan]
) -> None:
    now = ledger.utcnow()
    pending = add_run_at(ledger_db, RunStatus.PENDING, LONG_AGO, now=now)
    stale = add_run_at(ledger_db, RunStatus.RUNNING, LONG_AGO, chunks=[(ChunkStatus.RUNNING, LONG_AGO)], now=now)

    report = reconcile(FakeCelery(FakeInspect([])), ledger_db.session_factory, RECONCILE_SETTINGS, now=now)  # type: ignore[arg-type]

    assert report.as_json() == {"workers": 0, "started": [], "resumed": [], "webhook_deliveries_sent": 0}
    assert resumed == []
    assert chunk_statuses(ledger_db, stale) == [ChunkStatus.RUNNING]
    assert get_run(ledger_db, pending).status == RunStatus.PENDING


def test_reconcile_restarts_old_pending_runs_and_resumes_stale_ones_no_live_task_holds(
    ledger_db: Any, resumed: list[ledger.ResumePlan]
) -> None:
    now = ledger.utcnow()
    minute, five_minutes = dt.timedelta(seconds=60), dt.timedelta(seconds=300)
    just_under = dt.timedelta(seconds=1)
    old_pending = add_run_at(ledger_db, RunStatus.PENDING, minute + just_under, now=now)
    new_pending = add_run_at(ledger_db, RunStatus.PENDING, minute - just_under, now=now)
    stale = add_run_at(
        ledger_db, RunStatus.RUNNING, LONG_AGO, five_minutes + just_under,
        chunks=[
            (ChunkStatus.DONE, LONG_AGO),
            (ChunkStatus.RUNNING, LONG_AGO),  # abandoned: its worker is gone
            (ChunkStatus.PENDING, None),
            (ChunkStatus.RUNNING, dt.timedelta(seconds=10)),  # claimed just now: spared
        ],
        now=now,
    )
    held_by_live_task = add_run_at(
        ledger_db, RunStatus.RUNNING, LONG_AGO, chunks=[(ChunkStatus.RUNNING, LONG_AGO)], now=now
    )
    fresh = add_run_at(
        ledger_db, RunStatus.RUNNING, LONG_AGO, five_minutes - just_under,
        chunks=[(ChunkStatus.RUNNING, LONG_AGO), (ChunkStatus.PENDING, None)], now=now,
    )
    stale_cancelling = add_run_at(
        ledger_db, RunStatus.CANCELLING, LONG_AGO, chunks=[(ChunkStatus.PENDING, None)], now=now
    )
    ended = add_run_at(ledger_db, RunStatus.SUCCEEDED, LONG_AGO, chunks=[(ChunkStatus.DONE, LONG_AGO)], now=now)
    app = FakeCelery(
        FakeInspect(["w1@node"], active={"w1@node": [task("processSomeProducts", held_by_live_task, 1, 10)]}, reserved={}, scheduled={})
    )

    report = reconcile(app, ledger_db.session_factory, RECONCILE_SETTINGS, now=now)  # type: ignore[arg-type]

    assert report.workers == 1
    assert report.started == [old_pending]
    assert report.resumed == {stale: 2, stale_cancelling: 0}
    assert resumed == [
        ledger.ResumePlan(old_pending, restart=True),
        ledger.ResumePlan(stale, chunks=bounds(1, 2)),
        ledger.ResumePlan(stale_cancelling, chunks=()),
    ]
    assert chunk_statuses(ledger_db, stale) == [
        ChunkStatus.DONE, ChunkStatus.PENDING, ChunkStatus.PENDING, ChunkStatus.RUNNING,
    ]
    # Left alone: the pending run still within its minute, the run a live worker holds a task of,
    # the run that moved within five minutes, and the ended run.
    assert get_run(ledger_db, new_pending).status == RunStatus.PENDING
    assert chunk_statuses(ledger_db, held_by_live_task) == [ChunkStatus.RUNNING]
    assert chunk_statuses(ledger_db, fresh) == [ChunkStatus.RUNNING, ChunkStatus.PENDING]
    assert get_run(ledger_db, ended).status == RunStatus.SUCCEEDED
    # A resumed run counts as attended to: the next sweep gives what was re-sent time to arrive.
    assert get_run(ledger_db, stale).updated_at.replace(tzinfo=None) >= now.replace(tzinfo=None)
    again = reconcile(app, ledger_db.session_factory, RECONCILE_SETTINGS, now=now)  # type: ignore[arg-type]
    assert again.resumed == {}
    assert again.started == [old_pending]  # still pending: its first task has not arrived yet

"""The workers' sweep (tasks/sweep.py over warehouse/ledger/workers.py) on a SQLite database of its own:
what it releases, finishes, re-sends and starts, and what it leaves alone; and the fence on a late
failure. Sending is recorded instead of done, and whether the broker's queues are empty is set by
each test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

import tasks.sweep
from tests.sqlite_databases import own_sqlite_database
from warehouse import ledger
from warehouse.ledger import workers as fleet
from warehouse.models import ChunkStatus, Run, RunChunk, RunStatus, Warehouse, WorkerProcess

SETTINGS = {"warehouse.worker_dead_after_seconds": "15"}
LONG_AGO = dt.timedelta(minutes=10)


@pytest.fixture(scope="module")
def sweep_factory(tmp_path_factory: pytest.TempPathFactory, make_settings: Any) -> Iterator[sessionmaker[Session]]:
    """A database of the sweep tests' own: the sweep looks at every worker and run there is."""
    with own_sqlite_database(tmp_path_factory.mktemp("sweep") / "sweep.sqlite", make_settings) as factory:
        yield factory


@pytest.fixture
def sweep_db(sweep_factory: sessionmaker[Session], db: Any) -> Any:
    fresh = type(db)(sweep_factory)
    fresh.execute(delete(Warehouse))  # runs and chunks go with it
    fresh.execute(delete(WorkerProcess))
    return fresh


class Sent:
    def __init__(self) -> None:
        self.chunks: dict[int, list[tuple[int, int]]] = {}
        self.finished: list[int] = []
        self.started: list[int] = []
        self.queues_empty = True


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    record = Sent()

    def send_chunks(app: Any, run_id: int, chunks: list[ledger.ChunkBounds]) -> int:
        record.chunks[run_id] = [(chunk.start_id, chunk.end_id) for chunk in chunks]
        return len(chunks)

    monkeypatch.setattr(tasks.sweep, "send_chunks", send_chunks)
    monkeypatch.setattr(tasks.sweep, "send_finish", lambda app, run_id: record.finished.append(run_id))
    monkeypatch.setattr(tasks.sweep, "send_start", lambda app, run_id: record.started.append(run_id))
    monkeypatch.setattr(tasks.sweep, "_queues_empty", lambda app: record.queues_empty)
    return record


def sweep(db: Any) -> tasks.sweep.SweepReport:
    return tasks.sweep.sweep(None, db.session_factory, SETTINGS)  # type: ignore[arg-type]


def add_worker(db: Any, name: str, seen_ago: dt.timedelta = dt.timedelta(0), stopped: bool = False) -> int:
    now = ledger.utcnow()
    with db.session() as session:
        worker_id = fleet.register_worker(session, f"{name}@host", "host", 4242)
        session.execute(
            update(WorkerProcess)
            .where(WorkerProcess.id == worker_id)
            .values(last_seen_at=now - seen_ago, stopped_at=now if stopped else None)
        )
    return worker_id


def add_run(
    db: Any, status: str = RunStatus.RUNNING, chunks: list[tuple[str, int | None]] = (), quiet_for: dt.timedelta = LONG_AGO
) -> int:
    """A run with chunks (status, holder's worker id), not updated for ``quiet_for``."""
    warehouse = db.add_warehouse()
    now = ledger.utcnow()
    with db.session() as session:
        run = Run(warehouse_id=warehouse.id, operation="valuation", status=status, chunk_size=10, started_at=now)
        session.add(run)
        session.flush()
        for seq, (chunk_status, worker_id) in enumerate(chunks):
            session.add(
                RunChunk(
                    run_id=run.id, seq=seq, start_id=seq * 10 + 1, end_id=seq * 10 + 10, item_count=10,
                    status=chunk_status, attempts=1 if worker_id else 0, worker_id=worker_id,
                    task_id=f"task-{seq}" if worker_id else None, started_at=now if worker_id else None,
                )
            )
        session.flush()
        run_id = run.id
    done = sum(1 for chunk_status, _ in chunks if chunk_status == ChunkStatus.DONE)
    db.execute(
        update(Run).where(Run.id == run_id).values(updated_at=now - quiet_for, chunks_total=len(chunks), chunks_done=done)
    )
    return run_id


def chunks_of(db: Any, run_id: int) -> list[tuple[str, int | None]]:
    return [
        (status, task_id)
        for status, task_id in db.rows(select(RunChunk.status, RunChunk.task_id).where(RunChunk.run_id == run_id).order_by(RunChunk.seq))
    ]


def test_the_running_chunks_of_silent_and_stopped_workers_are_released_and_sent_again(sweep_db: Any, sent: Sent) -> None:
    alive = add_worker(sweep_db, "alive")
    silent = add_worker(sweep_db, "silent", seen_ago=dt.timedelta(seconds=16))
    stopped = add_worker(sweep_db, "stopped", stopped=True)
    run_id = add_run(
        sweep_db,
        chunks=[(ChunkStatus.RUNNING, alive), (ChunkStatus.RUNNING, silent), (ChunkStatus.RUNNING, stopped), (ChunkStatus.DONE, silent)],
        quiet_for=dt.timedelta(0),
    )

    report = sweep(sweep_db)

    assert report.swept and report.released == {run_id: 2}
    assert sent.chunks == {run_id: [(11, 20), (21, 30)]}
    assert chunks_of(sweep_db, run_id) == [
        (ChunkStatus.RUNNING, "task-0"), (ChunkStatus.PENDING, None), (ChunkStatus.PENDING, None), (ChunkStatus.DONE, "task-3"),
    ]
    # Released once: the next sweep finds nothing more to do for those chunks.
    sent.chunks.clear()
    assert not sweep(sweep_db).released and sent.chunks == {}


def test_a_worker_silent_for_less_than_the_timeout_keeps_its_chunks(sweep_db: Any, sent: Sent) -> None:
    worker = add_worker(sweep_db, "slow", seen_ago=dt.timedelta(seconds=10))
    run_id = add_run(sweep_db, chunks=[(ChunkStatus.RUNNING, worker), (ChunkStatus.PENDING, None)])

    assert not sweep(sweep_db)
    assert sent.chunks == {} and sent.finished == []
    assert chunks_of(sweep_db, run_id)[0] == (ChunkStatus.RUNNING, "task-0")


def test_quiet_runs_with_nothing_left_running_get_their_callback(sweep_db: Any, sent: Sent) -> None:
    all_done = add_run(sweep_db, chunks=[(ChunkStatus.DONE, None), (ChunkStatus.DONE, None)])
    cancelling = add_run(sweep_db, RunStatus.CANCELLING, chunks=[(ChunkStatus.DONE, None), (ChunkStatus.PENDING, None)])
    busy = add_run(sweep_db, chunks=[(ChunkStatus.DONE, None)], quiet_for=dt.timedelta(seconds=2))
    sent.queues_empty = False  # the callback needs no look at the queues

    report = sweep(sweep_db)

    assert sorted(report.finished) == sorted(sent.finished) == [all_done, cancelling]
    assert busy not in sent.finished
    assert sweep(sweep_db).finished == []  # touched: the next sweep gives the callback time


def test_quiet_pending_work_is_sent_again_only_when_the_queues_are_empty(sweep_db: Any, sent: Sent) -> None:
    stalled = add_run(sweep_db, chunks=[(ChunkStatus.DONE, None), (ChunkStatus.PENDING, None), (ChunkStatus.PENDING, None)])
    never_started = add_run(sweep_db, RunStatus.PENDING)
    sent.queues_empty = False

    assert not sweep(sweep_db)  # the messages may be waiting their turn behind others
    assert sent.chunks == {} and sent.started == []

    sent.queues_empty = True
    report = sweep(sweep_db)

    assert report.resent == {stalled: 2} and sent.chunks == {stalled: [(11, 20), (21, 30)]}
    assert report.started == sent.started == [never_started]


def test_a_run_held_by_a_live_worker_is_left_alone_however_quiet(sweep_db: Any, sent: Sent) -> None:
    worker = add_worker(sweep_db, "alive")
    add_run(sweep_db, chunks=[(ChunkStatus.RUNNING, worker), (ChunkStatus.PENDING, None)])

    assert not sweep(sweep_db)
    assert sent.chunks == {} and sent.finished == []


def test_a_heartbeat_for_a_forgotten_worker_says_so_and_old_rows_are_pruned(sweep_db: Any) -> None:
    gone = add_worker(sweep_db, "gone", seen_ago=dt.timedelta(days=8))
    recent = add_worker(sweep_db, "recent", seen_ago=dt.timedelta(days=1))

    with sweep_db.session() as session:
        assert fleet.prune_workers(session, gone_before=ledger.utcnow() - dt.timedelta(days=7)) == 1
    with sweep_db.session() as session:
        assert fleet.heartbeat(session, gone, 1, 0) is False
        assert fleet.heartbeat(session, recent, 3, 1) is True
    assert sweep_db.rows(select(WorkerProcess.id, WorkerProcess.chunks_done, WorkerProcess.chunks_failed)) == [(recent, 3, 1)]


def test_a_late_failure_cannot_fail_a_chunk_taken_over_since(sweep_db: Any) -> None:
    worker = add_worker(sweep_db, "new-holder")
    run_id = add_run(sweep_db, chunks=[(ChunkStatus.RUNNING, worker)])
    sweep_db.execute(update(RunChunk).where(RunChunk.run_id == run_id).values(attempts=2))

    with sweep_db.session() as session:
        # The first holder (attempt 1) froze, was declared dead, and now fails: nothing changes.
        assert ledger.fail_chunk(session, run_id, 1, "late", attempt=1) is False
        # Nor may another message's task fail it before claiming.
        assert ledger.fail_chunk(session, run_id, 1, "late", task_id="someone-else") is False
    assert chunks_of(sweep_db, run_id) == [(ChunkStatus.RUNNING, "task-0")]

    with sweep_db.session() as session:
        # The holder itself, or a redelivery of its own message that could not claim, may.
        assert ledger.fail_chunk(session, run_id, 1, "real", task_id="task-0") is True
    assert chunks_of(sweep_db, run_id) == [(ChunkStatus.FAILED, "task-0")]

"""State transitions of runs and chunks, as SQL against the ledger tables.

Every function here takes a session whose transaction the caller owns (a request's, or a task's), so
what a function changes is committed or rolled back together with the caller's work.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from sqlalchemy import ColumnElement, Select, bindparam, case, func, insert, literal, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from . import operations
from .models import (
    ACTIVE_RUN_STATUSES,
    UNFINISHED_CHUNK_STATUSES,
    ChunkStatus,
    Run,
    RunChunk,
    RunItemFailure,
    RunStatus,
    Warehouse,
)
from .operations import ChunkOutcome, ChunkWork


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class ActiveRunExists(Exception):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} of this operation is still active on this warehouse")
        self.run_id = run_id


def active_run_id(session: Session, warehouse_id: int, operation: str) -> int | None:
    return session.scalar(
        select(Run.id).where(
            Run.warehouse_id == warehouse_id,
            Run.operation == operation,
            Run.status.in_(ACTIVE_RUN_STATUSES),
        )
    )


def create_run(
    session: Session,
    warehouse: Warehouse,
    operation: str,
    chunk_size: int,
    tolerated_failure_percent: Decimal = Decimal(0),
) -> Run:
    """Record a pending run. The caller enqueues ``processWholeWarehouse`` once this commits."""
    active = active_run_id(session, warehouse.id, operation)
    if active is not None:
        raise ActiveRunExists(active)
    run = Run(
        warehouse_id=warehouse.id,
        operation=operation,
        status=RunStatus.PENDING,
        chunk_size=chunk_size,
        tolerated_failure_percent=tolerated_failure_percent,
    )
    try:
        # A savepoint, so losing the race on the partial unique index leaves the caller's
        # transaction usable for the 409 answer.
        with session.begin_nested():
            session.add(run)
    except IntegrityError:
        raise ActiveRunExists(active_run_id(session, warehouse.id, operation) or 0) from None
    return run


@dataclass(frozen=True)
class ChunkBounds:
    start_id: int
    end_id: int


def plan_run(session: Session, run_id: int) -> list[ChunkBounds] | None:
    """Move a pending run to running and write its chunk rows; None if it was planned already.

    Chunk boundaries are computed by the database in one statement (``chunk_bounds``): no ids are
    loaded into Python, whatever the run's size.
    """
    started = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.PENDING)
        .values(status=RunStatus.RUNNING, started_at=utcnow())
        .returning(Run.warehouse_id, Run.operation, Run.chunk_size, Run.started_at)
    ).one_or_none()
    if started is None:
        return None
    warehouse_id, operation_name, chunk_size, started_at = started
    operation = operations.get(operation_name)

    covered = operation.item_ids(warehouse_id, started_at.date()).subquery()
    plan = chunk_bounds(covered, chunk_size, run_id)
    without_jit(session)
    session.execute(
        insert(RunChunk).from_select(
            ["run_id", "seq", "start_id", "end_id", "item_count", "status", "attempts", "items_done", "items_failed"],
            plan,
        )
    )
    chunks_total, items_total, last_item_id = session.execute(
        select(func.count(), func.coalesce(func.sum(RunChunk.item_count), 0), func.max(RunChunk.end_id)).where(
            RunChunk.run_id == run_id
        )
    ).one()
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(chunks_total=chunks_total, items_total=items_total, last_item_id=last_item_id)
    )
    return pending_chunks(session, run_id)


def without_jit(session: Session) -> None:
    """Turn PostgreSQL's JIT off for the rest of the transaction (nothing elsewhere): it compiled the
    planning statement for longer than it ran, 0.6-0.7 s of 2.0 s at 10,000,000 products, all of it
    before the first chunk can start."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


def chunk_bounds(covered: Subquery, chunk_size: int, run_id: int) -> Select[Any]:
    """Rows for ``run_chunks``: the covered ids cut into keyset ranges of ``chunk_size``.

    Each chunk's first id is found from the one before by skipping ``chunk_size`` ids along the index
    (a recursive query), so the database reads every covered id once, but does nothing per id besides:
    numbering all of them with a window function and grouping them took 4-9 s at 10,000,000 products,
    this 1.4-1.9 s. A chunk ends at the last covered id before the next chunk's first.
    """
    covered_id = covered.c.id
    first_id = select(func.min(covered_id)).scalar_subquery()
    starts = select(literal(0).label("seq"), first_id.label("start_id")).cte("chunk_starts", recursive=True)
    next_start = (
        select(covered_id).where(covered_id > starts.c.start_id).order_by(covered_id).offset(chunk_size - 1).limit(1)
    ).scalar_subquery()
    starts = starts.union_all(select(starts.c.seq + 1, next_start).where(starts.c.start_id.is_not(None)))
    chunks = select(
        starts.c.seq,
        starts.c.start_id,
        func.lead(starts.c.start_id).over(order_by=starts.c.seq).label("next_start"),
    ).where(starts.c.start_id.is_not(None)).subquery()
    is_last = chunks.c.next_start.is_(None)
    end_id = case(
        (is_last, select(func.max(covered_id)).scalar_subquery()),
        else_=select(func.max(covered_id)).where(covered_id < chunks.c.next_start).scalar_subquery(),
    )
    item_count = case(
        (is_last, select(func.count()).select_from(covered).where(covered_id >= chunks.c.start_id).scalar_subquery()),
        else_=literal(chunk_size),
    )
    return select(
        literal(run_id),
        chunks.c.seq,
        chunks.c.start_id,
        end_id,
        item_count,
        literal(ChunkStatus.PENDING.value),
        literal(0),
        literal(0),
        literal(0),
    )


def pending_chunks(session: Session, run_id: int) -> list[ChunkBounds]:
    """The chunks of a run that have not started, in order: what a dispatch sends."""
    rows = session.execute(
        select(RunChunk.start_id, RunChunk.end_id)
        .where(RunChunk.run_id == run_id, RunChunk.status == ChunkStatus.PENDING)
        .order_by(RunChunk.seq)
    )
    return [ChunkBounds(start, end) for start, end in rows]


def _unfinished_chunk(run_id: int, start_id: int) -> tuple[ColumnElement[bool], ...]:
    return (
        RunChunk.run_id == run_id,
        RunChunk.start_id == start_id,
        RunChunk.status.in_(UNFINISHED_CHUNK_STATUSES),
    )


@dataclass(frozen=True)
class ClaimedChunk:
    """A chunk this task holds: ``attempt`` fences out any earlier holder's late writes."""

    id: int
    run_id: int
    start_id: int
    end_id: int
    attempt: int
    warehouse_id: int
    operation: str
    planned_on: dt.date
    item_count: int = 0


class ChunkLost(Exception):
    """The chunk was taken over while this task worked on it; its work must be rolled back."""


def claim_chunk(session: Session, run_id: int, start_id: int, hostname: str | None, task_id: str | None) -> ClaimedChunk | None:
    """Mark a chunk running for this task, in a short transaction of its own; None: leave it alone.

    The chunk's row is locked while deciding, so two deliveries of one chunk never both claim it.
    A running chunk is taken over only by a redelivery of the message that claimed it (Celery keeps
    the task id across redeliveries and retries), which means its first execution died. A chunk
    of a run being cancelled, or failing past its threshold, is skipped instead.

    The common case (a pending chunk of a running run with no failures yet) is one UPDATE; anything
    else is decided row by row in ``_claim_or_skip``. Every chunk pays the claim, so its round trips
    count: see docs/benchmarks.md.
    """
    return _claim_at_once(session, run_id, start_id, hostname, task_id) or _claim_or_skip(
        session, run_id, start_id, hostname, task_id
    )


# The statements every chunk runs are built once, with bound parameters: building a statement and
# computing its cache key cost the worker more CPU than the database spends running these small
# UPDATEs (see "Where the time goes" in docs/benchmarks.md). Parameters are named b_*: SQLAlchemy
# reserves the updated table's column names for itself.


def _run_fact(column: Any) -> Any:
    return select(column).where(Run.id == bindparam("b_run_id")).scalar_subquery()


_CLAIM_AT_ONCE = (
    update(RunChunk)
    .where(
        RunChunk.run_id == bindparam("b_run_id"),
        RunChunk.start_id == bindparam("b_start_id"),
        (RunChunk.status == ChunkStatus.PENDING)
        | ((RunChunk.status == ChunkStatus.RUNNING) & (RunChunk.task_id == bindparam("b_task_id"))),
        # FOR KEY SHARE on the run: waits for a cancel being committed (cancel_run locks the row
        # FOR UPDATE) and then sees its status, so no chunk starts after a cancel; yet it never
        # blocks other chunks bumping the run's counters.
        select(Run.id)
        .where(
            Run.id == bindparam("b_run_id"),
            Run.status == RunStatus.RUNNING,
            Run.items_failed == 0,
            Run.chunks_failed == 0,
        )
        .with_for_update(read=True, key_share=True)
        .exists(),
    )
    .values(
        status=ChunkStatus.RUNNING,
        attempts=RunChunk.attempts + 1,
        worker_hostname=bindparam("b_hostname"),
        task_id=bindparam("b_task_id"),
        started_at=bindparam("b_now"),
    )
    # Scalar subqueries rather than UPDATE ... FROM runs: SQLite's RETURNING cannot name a joined
    # table's columns.
    .returning(
        RunChunk.id,
        RunChunk.start_id,
        RunChunk.end_id,
        RunChunk.attempts,
        RunChunk.item_count,
        _run_fact(Run.warehouse_id),
        _run_fact(Run.operation),
        _run_fact(Run.started_at),
    )
    .execution_options(synchronize_session=False)
)


def _claim_at_once(session: Session, run_id: int, start_id: int, hostname: str | None, task_id: str | None) -> ClaimedChunk | None:
    """Claim a pending chunk (or take over this task's own) of a running run with no failures."""
    claimed = session.execute(
        _CLAIM_AT_ONCE,
        {"b_run_id": run_id, "b_start_id": start_id, "b_hostname": hostname, "b_task_id": task_id, "b_now": utcnow()},
    ).one_or_none()
    if claimed is None:
        return None
    chunk_id, start, end, attempt, item_count, warehouse_id, operation, started_at = claimed
    return ClaimedChunk(
        id=chunk_id,
        run_id=run_id,
        start_id=start,
        end_id=end,
        attempt=attempt,
        warehouse_id=warehouse_id,
        operation=operation,
        planned_on=(started_at or utcnow()).date(),
        item_count=item_count,
    )


def _claim_or_skip(session: Session, run_id: int, start_id: int, hostname: str | None, task_id: str | None) -> ClaimedChunk | None:
    """The claim's every other case: the chunk finished or held by another task (None), the run
    cancelling or past its failure threshold (the chunk is skipped), or failures below it (claimed)."""
    chunk = session.execute(
        select(RunChunk).where(*_unfinished_chunk(run_id, start_id)).with_for_update()
    ).scalar_one_or_none()
    if chunk is None:
        return None
    if chunk.status == ChunkStatus.RUNNING and chunk.task_id != task_id:
        return None
    run = session.execute(
        select(Run)
        .where(Run.id == run_id)
        .with_for_update(read=True, key_share=True)
        .execution_options(populate_existing=True)
    ).scalar_one()
    if run.status != RunStatus.RUNNING or exceeds_threshold(run):
        skip_chunk(session, chunk)
        return None
    chunk.status = ChunkStatus.RUNNING
    chunk.attempts += 1
    chunk.worker_hostname = hostname
    chunk.task_id = task_id
    chunk.started_at = utcnow()
    session.flush()
    return ClaimedChunk(
        id=chunk.id,
        run_id=run_id,
        start_id=chunk.start_id,
        end_id=chunk.end_id,
        attempt=chunk.attempts,
        warehouse_id=run.warehouse_id,
        operation=run.operation,
        planned_on=(run.started_at or utcnow()).date(),
        item_count=chunk.item_count,
    )


def skip_chunk(session: Session, chunk: RunChunk) -> None:
    chunk.status = ChunkStatus.SKIPPED
    chunk.finished_at = utcnow()
    session.execute(update(Run).where(Run.id == chunk.run_id).values(chunks_skipped=Run.chunks_skipped + 1))


_FINISH_CHUNK = (
    update(RunChunk)
    .where(
        RunChunk.id == bindparam("b_chunk_id"),
        RunChunk.status == ChunkStatus.RUNNING,
        RunChunk.attempts == bindparam("b_attempt"),
    )
    .values(
        status=bindparam("b_status"),
        items_done=bindparam("b_items_done"),
        items_failed=bindparam("b_items_failed"),
        summary=bindparam("b_summary"),
        finished_at=bindparam("b_now"),
    )
    .execution_options(synchronize_session=False)
)


def do_chunk(session: Session, claimed: ClaimedChunk, settings: Mapping[str, Any]) -> ChunkOutcome:
    """Do a claimed chunk's work and record its outcome, in the caller's transaction.

    The session begins its transaction lazily, so an operation that waits on the network before it
    writes holds no database lock meanwhile.
    """
    work = ChunkWork(
        session=session,
        run_id=claimed.run_id,
        warehouse_id=claimed.warehouse_id,
        start_id=claimed.start_id,
        end_id=claimed.end_id,
        settings=settings,
        planned_on=claimed.planned_on,
        item_count=claimed.item_count,
    )
    outcome = operations.get(claimed.operation).process_chunk(work)
    status = ChunkStatus.FAILED if outcome.items_failed and not outcome.items_done else ChunkStatus.DONE
    completed = session.execute(
        _FINISH_CHUNK,
        {
            "b_chunk_id": claimed.id,
            "b_attempt": claimed.attempt,
            "b_status": status,
            "b_items_done": outcome.items_done,
            "b_items_failed": outcome.items_failed,
            "b_summary": outcome.summary,
            "b_now": utcnow(),
        },
    )
    if completed.rowcount != 1:
        raise ChunkLost(f"run {claimed.run_id} chunk {claimed.start_id}-{claimed.end_id} was taken over")
    if outcome.failures:
        session.execute(
            insert(RunItemFailure),
            [
                {"run_id": claimed.run_id, "chunk_id": claimed.id, "item_id": failure.item_id, "error": failure.error[:4000]}
                for failure in outcome.failures
            ],
        )
    _count_finished_chunk(session, claimed.run_id, status, outcome.items_done, outcome.items_failed)
    return outcome


def fail_chunk(session: Session, run_id: int, start_id: int, error: str) -> bool:
    """Record that a chunk failed for good; False if it had already finished."""
    failed = session.execute(
        update(RunChunk)
        .where(*_unfinished_chunk(run_id, start_id))
        .values(status=ChunkStatus.FAILED, error=error[:4000], finished_at=utcnow())
        .returning(RunChunk.item_count)
    ).one_or_none()
    if failed is None:
        return False
    _count_finished_chunk(session, run_id, ChunkStatus.FAILED, 0, failed.item_count)
    return True


_COUNT_FINISHED_CHUNK = (
    update(Run)
    .where(Run.id == bindparam("b_run_id"))
    .values(
        chunks_done=Run.chunks_done + bindparam("b_chunks_done"),
        chunks_failed=Run.chunks_failed + bindparam("b_chunks_failed"),
        items_done=Run.items_done + bindparam("b_items_done"),
        items_failed=Run.items_failed + bindparam("b_items_failed"),
        updated_at=bindparam("b_now"),
    )
    .execution_options(synchronize_session=False)
)


def _count_finished_chunk(session: Session, run_id: int, status: str, items_done: int, items_failed: int) -> None:
    done = status == ChunkStatus.DONE
    session.execute(
        _COUNT_FINISHED_CHUNK,
        {
            "b_run_id": run_id,
            "b_chunks_done": int(done),
            "b_chunks_failed": int(not done),
            "b_items_done": items_done,
            "b_items_failed": items_failed,
            "b_now": utcnow(),
        },
    )


class FinaliseResult:
    WAIT = "wait"  # chunks are still unfinished: try again later
    DONE_ALREADY = "done_already"  # an earlier call finalised the run


def finalise_run(session: Session, run_id: int) -> str:
    """Write the run's result and terminal status once every chunk has finished.

    Returns the status set, or a ``FinaliseResult`` constant. The final UPDATE is conditional on the
    run still being active, so however often this runs, the result is written once.
    """
    run = session.get_one(Run, run_id)
    if run.status not in (RunStatus.RUNNING, RunStatus.CANCELLING):
        return FinaliseResult.DONE_ALREADY
    if run.status == RunStatus.CANCELLING or exceeds_threshold(run):
        # Chunks that never started will not: skip them rather than wait for messages that may be
        # lost. Chunks already running are left to finish; until they have, this returns WAIT.
        skipped = session.execute(
            update(RunChunk)
            .where(RunChunk.run_id == run_id, RunChunk.status == ChunkStatus.PENDING)
            .values(status=ChunkStatus.SKIPPED, finished_at=utcnow())
        ).rowcount
        if skipped:
            session.execute(update(Run).where(Run.id == run_id).values(chunks_skipped=Run.chunks_skipped + skipped))
            session.refresh(run)
    unfinished = session.scalar(
        select(func.count()).where(RunChunk.run_id == run_id, RunChunk.status.in_(UNFINISHED_CHUNK_STATUSES))
    )
    if unfinished:
        return FinaliseResult.WAIT

    operation = operations.get(run.operation)
    summaries = session.scalars(
        select(RunChunk.summary).where(RunChunk.run_id == run_id, RunChunk.status == ChunkStatus.DONE)
    )
    result = operation.summarise(summary for summary in summaries if summary)
    result.update(items_processed=run.items_done, items_failed=run.items_failed)
    status = decide_status(run)
    finalised = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status.in_((RunStatus.RUNNING, RunStatus.CANCELLING)))
        .values(status=status, result=result, finished_at=utcnow())
    )
    return status if finalised.rowcount == 1 else FinaliseResult.DONE_ALREADY


def exceeds_threshold(run: Run) -> bool:
    """True once more items failed than the run tolerates: the rest of the run is not worth doing."""
    if not run.items_failed and not run.chunks_failed:
        return False
    if not run.items_total:
        return True
    return Decimal(run.items_failed) * 100 / Decimal(run.items_total) > Decimal(run.tolerated_failure_percent or 0)


def decide_status(run: Run) -> RunStatus:
    if run.status == RunStatus.CANCELLING:
        return RunStatus.CANCELLED
    if not run.items_failed and not run.chunks_failed:
        return RunStatus.SUCCEEDED
    return RunStatus.FAILED if exceeds_threshold(run) else RunStatus.PARTIALLY_FAILED


def lock_run(session: Session, run_id: int) -> Run:
    """The run's row, locked and freshly read: a copy the session loaded earlier (say, by the view
    that looked the run up) would otherwise be handed back with the status it had before the lock."""
    statement = select(Run).where(Run.id == run_id).with_for_update().execution_options(populate_existing=True)
    return session.execute(statement).scalar_one()


class RunEnded(Exception):
    def __init__(self, run_id: int, status: str) -> None:
        super().__init__(f"run {run_id} has ended ({status})")
        self.status = status


def cancel_run(session: Session, run_id: int) -> Run:
    """Ask a run to stop: durable, because every chunk checks the run's status before it starts.

    A pending run (nothing dispatched yet) is cancelled at once; a running one becomes ``cancelling``
    until the chunks already running have finished and ``processFinished`` ends it.
    """
    run = lock_run(session, run_id)
    now = utcnow()
    if run.status == RunStatus.PENDING:
        run.status, run.cancel_requested_at, run.finished_at = RunStatus.CANCELLED, now, now
    elif run.status == RunStatus.RUNNING:
        run.status, run.cancel_requested_at = RunStatus.CANCELLING, now
    elif run.status != RunStatus.CANCELLING:
        raise RunEnded(run_id, run.status)
    session.flush()
    return run


def release_abandoned_chunks(session: Session, run_id: int, claimed_before: dt.datetime) -> int:
    """Put back to pending the running chunks claimed before ``claimed_before``: their task is gone.

    Only the reconciler and resume call this, once no live worker holds a task of the run; the time
    bound spares a chunk claimed between that check and this statement.
    """
    return session.execute(
        update(RunChunk)
        .where(
            RunChunk.run_id == run_id,
            RunChunk.status == ChunkStatus.RUNNING,
            RunChunk.started_at < claimed_before,
        )
        .values(status=ChunkStatus.PENDING, task_id=None)
    ).rowcount


def touch_run(session: Session, run_id: int) -> None:
    """Mark a run as just attended to, so the reconciler gives what it re-sent time to arrive."""
    session.execute(update(Run).where(Run.id == run_id).values(updated_at=utcnow()))


@dataclass(frozen=True)
class ResumePlan:
    """What to send to get a run going again: its first task again, or its unfinished chunks."""

    run_id: int
    restart: bool = False
    chunks: tuple[ChunkBounds, ...] = ()


def prepare_resume(session: Session, run_id: int, claimed_before: dt.datetime) -> ResumePlan:
    """Release abandoned chunks and list what to re-send; the caller sends it after commit.

    Re-sending a chunk that is in fact still queued somewhere costs a message, not work: whichever
    delivery comes second finds the chunk claimed or done and does nothing.
    """
    run = lock_run(session, run_id)
    if run.status == RunStatus.PENDING:
        return ResumePlan(run_id, restart=True)
    if run.status not in (RunStatus.RUNNING, RunStatus.CANCELLING):
        raise RunEnded(run_id, run.status)
    release_abandoned_chunks(session, run_id, claimed_before)
    touch_run(session, run_id)
    # A cancelling run needs no chunks, only its callback, which skips whatever never started.
    chunks = pending_chunks(session, run_id) if run.status == RunStatus.RUNNING else []
    return ResumePlan(run_id, chunks=tuple(chunks))

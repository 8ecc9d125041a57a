"""A chunk task taking hold of its chunk, or leaving it alone (finished, held elsewhere, skipped)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from ..models import ChunkStatus, Run, RunChunk, RunStatus
from .shared import exceeds_threshold, unfinished_chunk, utcnow


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
    # The summary an earlier attempt recorded, kept by a redrive (ChunkWork.previous_summary).
    previous_summary: dict[str, Any] | None = None


class ChunkLost(Exception):
    """The chunk was taken over while this task worked on it; its work must be rolled back."""


def claim_chunk(
    session: Session,
    run_id: int,
    start_id: int,
    hostname: str | None,
    task_id: str | None,
    worker_id: int | None = None,
    *,
    pending_tried: bool = False,
) -> ClaimedChunk | None:
    """Mark a chunk running for this task, in a short transaction of its own; None: leave it alone.

    The chunk's row is locked while deciding, so two deliveries of one chunk never both claim it.
    A running chunk is taken over only by a redelivery of the message that claimed it (Celery keeps
    the task id across redeliveries and retries), which means its first execution died. A chunk
    of a run being cancelled, or failing past its threshold, is skipped instead.

    The common case (a pending chunk of a running run with no failures yet) is one UPDATE; anything
    else is decided row by row in ``_claim_or_skip``. Every chunk pays the claim, so its round trips
    count: see docs/benchmarks.md.
    """
    claimed = None if pending_tried else claim_pending_chunk(session.connection(), run_id, start_id, hostname, task_id, worker_id)
    return claimed or _claim_or_skip(session, run_id, start_id, hostname, task_id, worker_id)


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
        worker_id=bindparam("b_worker_id"),
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
        RunChunk.summary,
        _run_fact(Run.warehouse_id),
        _run_fact(Run.operation),
        _run_fact(Run.started_at),
    )
    .execution_options(synchronize_session=False)
)


def claim_pending_chunk(
    connection: Connection, run_id: int, start_id: int, hostname: str | None, task_id: str | None, worker_id: int | None
) -> ClaimedChunk | None:
    """Claim a pending chunk (or take over this task's own) of a running run with no failures, in one
    statement (a task may run it alone, in autocommit); None for every other case, which
    ``claim_chunk`` decides. On a Core connection: nothing of it is an ORM object, and the ORM's
    bulk-UPDATE path cost more of the worker's time per chunk than the database took to run it."""
    claimed = connection.execute(
        _CLAIM_AT_ONCE,
        {
            "b_run_id": run_id,
            "b_start_id": start_id,
            "b_hostname": hostname,
            "b_worker_id": worker_id,
            "b_task_id": task_id,
            "b_now": utcnow(),
        },
    ).one_or_none()
    if claimed is None:
        return None
    chunk_id, start, end, attempt, item_count, summary, warehouse_id, operation, started_at = claimed
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
        previous_summary=summary,
    )


def _claim_or_skip(
    session: Session, run_id: int, start_id: int, hostname: str | None, task_id: str | None, worker_id: int | None
) -> ClaimedChunk | None:
    """The claim's every other case: the chunk finished or held by another task (None), the run
    cancelling or past its failure threshold (the chunk is skipped), or failures below it (claimed)."""
    chunk = session.execute(
        select(RunChunk).where(*unfinished_chunk(run_id, start_id)).with_for_update()
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
    chunk.worker_id = worker_id
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
        previous_summary=chunk.summary,
    )


def skip_chunk(session: Session, chunk: RunChunk) -> None:
    chunk.status = ChunkStatus.SKIPPED
    chunk.finished_at = utcnow()
    session.execute(update(Run).where(Run.id == chunk.run_id).values(chunks_skipped=Run.chunks_skipped + 1))

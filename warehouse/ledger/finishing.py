"""A run's end: its result and terminal status, written once when every chunk has finished."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .. import operations
from ..models import UNFINISHED_CHUNK_STATUSES, ChunkStatus, Run, RunChunk, RunStatus
from ..webhooks.outbox import record_run_event
from .shared import exceeds_threshold, utcnow


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
    if finalised.rowcount != 1:
        return FinaliseResult.DONE_ALREADY
    record_run_event(session, run_id, status)
    return status


def decide_status(run: Run) -> RunStatus:
    if run.status == RunStatus.CANCELLING:
        return RunStatus.CANCELLED
    if not run.items_failed and not run.chunks_failed:
        return RunStatus.SUCCEEDED
    return RunStatus.FAILED if exceeds_threshold(run) else RunStatus.PARTIALLY_FAILED

"""What people and the reconciler do to a run: cancel it, or get it going again."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..models import ChunkStatus, Run, RunChunk, RunStatus
from ..webhooks.outbox import record_run_event
from .planning import pending_chunks
from .shared import ChunkBounds, utcnow


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
    if run.status == RunStatus.CANCELLED:
        record_run_event(session, run_id, RunStatus.CANCELLED)
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

"""Redrive: a run that ended with failures gets its failed chunks (and the chunks it skipped once past
its failure threshold) done again, in the same run, as AWS Step Functions redrives an execution.

The chunks that succeeded keep their outcome and are not done again; the redriven ones go back to
pending, and the run to running, so that the usual claim, outcome and finish decide the run again
over all of its chunks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import ACTIVE_RUN_STATUSES, ChunkStatus, Run, RunChunk, RunItemFailure, RunStatus
from .control import lock_run
from .planning import active_run_id
from .shared import ChunkBounds, utcnow


class RedriveRefused(Exception):
    """Why a run cannot be redriven, in a sentence; ``reason`` says it in one word for the API's
    error code, ``status`` is the run's."""

    reason: str

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class RunActive(RedriveRefused):
    reason = "run_active"

    def __init__(self, run_id: int, status: str) -> None:
        super().__init__(
            f"run {run_id} has not ended (it is {status}), and only a run that has ended can be redriven", status
        )


class RunCancelled(RedriveRefused):
    reason = "run_cancelled"

    def __init__(self, run_id: int) -> None:
        super().__init__(
            f"run {run_id} was cancelled, and a cancel is final: it is never redriven; start a new run instead",
            RunStatus.CANCELLED,
        )


class NothingToRedrive(RedriveRefused):
    reason = "nothing_to_redrive"

    def __init__(self, run_id: int, status: str) -> None:
        super().__init__(
            f"run {run_id} has nothing to redrive: it ended ({status}) with no failed chunk and no failed item", status
        )


class DetailsPurged(RedriveRefused):
    """The run's chunks and item failures were removed by retention (warehouse/ledger/retention.py):
    nothing is left to say what to do again."""

    reason = "details_purged"

    def __init__(self, run_id: int, status: str, purged_at: dt.datetime, kept_days: int | None) -> None:
        kept = f" (runs keep them for {kept_days:,} day{'' if kept_days == 1 else 's'} after they end)" if kept_days else ""
        super().__init__(
            f"run {run_id} cannot be redriven: its chunk details were removed on {purged_at:%Y-%m-%d}{kept}; "
            "start a new run instead",
            status,
        )
        self.purged_at = purged_at


class AnotherRunActive(RedriveRefused):
    """The run would be active beside another run of its operation on its warehouse, which the
    database allows only once at a time (``uq_runs_one_active_per_operation``)."""

    reason = "run_active"

    def __init__(self, run_id: int, status: str, active_run_id: int) -> None:
        super().__init__(
            f"run {active_run_id} of this operation is still active on this warehouse, so run {run_id} can be "
            "redriven only once that one has ended",
            status,
        )
        self.active_run_id = active_run_id


@dataclass(frozen=True)
class RedrivePlan:
    """The chunks to send again as a chord chained to processFinished, once the redrive commits."""

    run_id: int
    chunks: tuple[ChunkBounds, ...]


def redrivable(run: Run) -> ColumnElement[bool]:
    """Which chunks of an ended ``run`` a redrive sends again."""
    chosen = [
        RunChunk.status == ChunkStatus.FAILED,
        (RunChunk.status == ChunkStatus.DONE) & (RunChunk.items_failed > 0),
    ]
    if run.status == RunStatus.FAILED:
        # Only a run that stopped early past its threshold skipped chunks for its failures' sake; a
        # cancelled run's skipped chunks are never redriven (a cancel is final).
        chosen.append(RunChunk.status == ChunkStatus.SKIPPED)
    return (RunChunk.run_id == run.id) & or_(*chosen)


def prepare_redrive(session: Session, run_id: int, kept_days: int | None = None) -> RedrivePlan:
    """Put the run's failed chunks back to pending and the run back to running; the caller sends the
    plan's chunks after commit. NoResultFound if there is no such run; a ``RedriveRefused`` if it
    cannot be redriven (the caller's transaction must then be rolled back). ``kept_days``, the
    retention period, is only for the words of a refusal of a run whose details were removed."""
    run = lock_run(session, run_id)
    if run.status in ACTIVE_RUN_STATUSES:
        raise RunActive(run_id, run.status)
    if run.status == RunStatus.CANCELLED:
        raise RunCancelled(run_id)
    if run.details_purged_at is not None:
        # Checked under the run's lock, which retention takes too before it deletes a row.
        raise DetailsPurged(run_id, run.status, run.details_purged_at, kept_days)
    chosen = redrivable(run)
    chunks = session.execute(
        select(RunChunk.id, RunChunk.start_id, RunChunk.end_id).where(chosen).order_by(RunChunk.seq)
    ).all()
    if not chunks:
        raise NothingToRedrive(run_id, run.status)
    other = active_run_id(session, run.warehouse_id, run.operation)
    if other is not None:
        raise AnotherRunActive(run_id, run.status, other)

    chunk_ids = [chunk.id for chunk in chunks]
    # The chunk's summary stays: the operation gets it as ChunkWork.previous_summary. Its attempts
    # keep counting, so a late write of an earlier attempt is still fenced out.
    session.execute(
        update(RunChunk)
        .where(chosen)
        .values(status=ChunkStatus.PENDING, items_done=0, items_failed=0, error=None, finished_at=None, task_id=None)
        .execution_options(synchronize_session=False)
    )
    # A redriven chunk records its failures again if they recur.
    session.execute(
        delete(RunItemFailure).where(RunItemFailure.run_id == run_id, RunItemFailure.chunk_id.in_(chunk_ids))
    )
    counts = _counts_kept(session, run_id)
    ended_status = run.status
    try:
        # A savepoint, with the run's changes made inside it (begin_nested flushes what is pending
        # first): losing a race on the one-active-run index then leaves the caller's transaction usable.
        with session.begin_nested():
            run.chunks_done, run.chunks_failed, run.chunks_skipped, run.items_done, run.items_failed = counts
            run.status, run.finished_at, run.result, run.error = RunStatus.RUNNING, None, None, None
            run.redrive_count = (run.redrive_count or 0) + 1
            run.redriven_at = run.updated_at = utcnow()
            session.flush()
    except IntegrityError:
        other = active_run_id(session, run.warehouse_id, run.operation) or 0
        raise AnotherRunActive(run_id, ended_status, other) from None
    return RedrivePlan(run_id, tuple(ChunkBounds(chunk.start_id, chunk.end_id) for chunk in chunks))


def _counts_kept(session: Session, run_id: int) -> tuple[int, int, int, int, int]:
    """The run's counters (chunks done, failed, skipped; items done, failed) from the chunks that keep
    their outcome: the redriven chunks' contributions taken out. Counted rather than subtracted
    because a chunk failed for good (``fail_chunk``) adds its whole item count to the run's failures
    but none to its own row's."""
    done, failed, skipped, items_done, items_failed = session.execute(
        select(
            func.count().filter(RunChunk.status == ChunkStatus.DONE),
            func.count().filter(RunChunk.status == ChunkStatus.FAILED),
            func.count().filter(RunChunk.status == ChunkStatus.SKIPPED),
            func.coalesce(func.sum(RunChunk.items_done), 0),
            func.coalesce(func.sum(RunChunk.items_failed), 0),
        ).where(RunChunk.run_id == run_id)
    ).one()
    return done, failed, skipped, items_done, items_failed

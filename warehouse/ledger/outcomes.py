"""A claimed chunk's work and its outcome, recorded only while its attempt still holds the claim."""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from .. import operations
from ..models import ChunkStatus, Run, RunChunk, RunItemFailure
from ..operations import ChunkOutcome, ChunkWork
from .claims import ChunkLost, ClaimedChunk
from .shared import utcnow


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
        previous_summary=claimed.previous_summary,
    )
    outcome = operations.get(claimed.operation).process_chunk(work)
    status = ChunkStatus.FAILED if outcome.items_failed and not outcome.items_done else ChunkStatus.DONE
    done = status == ChunkStatus.DONE
    finish = {
        "b_chunk_id": claimed.id,
        "b_attempt": claimed.attempt,
        "b_status": status,
        "b_summary": outcome.summary,
        "b_run_id": claimed.run_id,
        "b_chunks_done": int(done),
        "b_chunks_failed": int(not done),
        "b_items_done": outcome.items_done,
        "b_items_failed": outcome.items_failed,
        "b_now": utcnow(),
    }
    # On the session's Core connection, as the claim (ledger/claims.py says why).
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # The chunk's finish and the run's counters in one statement: one round trip fewer for every
        # chunk, which at 500 products a chunk is paid 2,000 times per million (docs/benchmarks.md).
        finished = connection.execute(_FINISH_AND_COUNT, finish).one_or_none() is not None
    else:  # SQLite has no UPDATE inside WITH
        finished = connection.execute(_FINISH_CHUNK, finish).rowcount == 1
        if finished:
            connection.execute(_COUNT_FINISHED_CHUNK, finish)
    if not finished:
        raise ChunkLost(f"run {claimed.run_id} chunk {claimed.start_id}-{claimed.end_id} was taken over")
    if outcome.failures:
        session.execute(
            insert(RunItemFailure),
            [
                {"run_id": claimed.run_id, "chunk_id": claimed.id, "item_id": failure.item_id, "error": failure.error[:4000]}
                for failure in outcome.failures
            ],
        )
    return outcome


def fail_chunk(
    session: Session, run_id: int, start_id: int, error: str, attempt: int | None = None, task_id: str | None = None
) -> bool:
    """Record that a chunk failed for good; False if it had finished, or is no longer this task's.

    ``attempt`` is the claim the failing task holds; without one (it failed before it could claim),
    the chunk must be unclaimed or still claimed by this task's message (``task_id``, from an earlier
    delivery). A task whose chunk was taken over meanwhile (it froze, and its worker was declared
    dead) must not fail the chunk under its new holder.
    """
    running = RunChunk.status == ChunkStatus.RUNNING
    held = (
        running & (RunChunk.attempts == attempt)
        if attempt is not None
        else (RunChunk.status == ChunkStatus.PENDING) | (running & (RunChunk.task_id == task_id))
    )
    failed = session.execute(
        update(RunChunk)
        .where(RunChunk.run_id == run_id, RunChunk.start_id == start_id, held)
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


# The chunk's finish as a CTE of the run's counting: the counters move only if this attempt still held
# the chunk (the CTE's UPDATE matched), and RETURNING says which happened. Both share the b_items_*
# and b_now parameters, which mean the same in each.
_FINISHED = _FINISH_CHUNK.returning(RunChunk.id).cte("finished")
_FINISH_AND_COUNT = (
    _COUNT_FINISHED_CHUNK.add_cte(_FINISHED)
    .where(select(_FINISHED.c.id).exists())
    .returning(Run.id)
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

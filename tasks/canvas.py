"""Sending a run's work: the chord of chunk tasks chained to processFinished."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery, chain, group

from warehouse.ledger import ChunkBounds, ResumePlan


def send_start(app: Celery, run_id: int) -> None:
    """Send ``processWholeWarehouse(run_id)``: planning and fan-out happen in a worker.

    Its result is never read, so nothing subscribes to it: with the broker down, sending fails in
    about a second (the publish retry policy) instead of waiting on the result backend too.
    """
    app.send_task("processWholeWarehouse", args=[run_id], ignore_result=True)


def send_finish(app: Celery, run_id: int) -> None:
    """Send ``processFinished([], run_id)`` outside any chord: it ends a cancelled run without
    waiting for queued chunk messages to drain, and is harmless if the chord's callback comes too."""
    app.send_task("processFinished", args=[[], run_id], ignore_result=True)


def send_chunks(app: Celery, run_id: int, chunks: Sequence[ChunkBounds]) -> int:
    """``chain(group(processSomeProducts...), processFinished)``; just the callback if no chunks."""
    if not chunks:
        # Nothing to do: finish the run through the same callback, with no chunk results.
        send_finish(app, run_id)
        return 0
    header = group(app.signature("processSomeProducts", args=(run_id, chunk.start_id, chunk.end_id)) for chunk in chunks)
    chain(header, app.signature("processFinished", args=(run_id,))).apply_async()
    return len(chunks)


def send_resume(app: Celery, plan: ResumePlan) -> int:
    """Send what ``plan`` says; the number of chunks sent."""
    if plan.restart:
        send_start(app, plan.run_id)
        return 0
    return send_chunks(app, plan.run_id, plan.chunks)

"""Sending a run's work: the chord of chunk tasks chained to processFinished."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery, chain, group

from warehouse.ledger import ChunkBounds, ResumePlan


def send_chunks(app: Celery, run_id: int, chunks: Sequence[ChunkBounds]) -> int:
    """``chain(group(processSomeProducts...), processFinished)``; just the callback if no chunks."""
    if not chunks:
        # Nothing to do: finish the run through the same callback, with no chunk results.
        app.signature("processFinished", args=([], run_id)).apply_async()
        return 0
    header = group(app.signature("processSomeProducts", args=(run_id, chunk.start_id, chunk.end_id)) for chunk in chunks)
    chain(header, app.signature("processFinished", args=(run_id,))).apply_async()
    return len(chunks)


def send_resume(app: Celery, plan: ResumePlan) -> int:
    """Send what ``plan`` says; the number of chunks sent."""
    if plan.restart:
        app.send_task("processWholeWarehouse", args=[plan.run_id])
        return 0
    return send_chunks(app, plan.run_id, plan.chunks)

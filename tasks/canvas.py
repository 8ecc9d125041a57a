"""Sending a run's work: the chord of chunk tasks chained to processFinished."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery, chain, group
from celery.backends.redis import RedisBackend

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
    options = {"ignore_result": True} if _chord_keeps_results(app) else {}
    header = group(
        app.signature("processSomeProducts", args=(run_id, chunk.start_id, chunk.end_id), options=options)
        for chunk in chunks
    )
    chain(header, app.signature("processFinished", args=(run_id,))).apply_async()
    return len(chunks)


def _chord_keeps_results(app: Celery) -> bool:
    """Whether the result backend hands the chord's callback its header's results by itself.

    Redis's chord keeps each header task's result in a list of its own, and so does the embedded
    default's (tasks/embedded_backend.py), so the chunks need not store theirs (ignore_result): that
    spares a result write, a publish and, in the dispatching process, a subscription per chunk (no one
    else reads them: the ledger has every outcome). Other backends join the stored results, so there
    they must be kept.
    """
    return isinstance(app.backend, RedisBackend) or getattr(app.backend, "keeps_chord_results", False)


def send_resume(app: Celery, plan: ResumePlan) -> int:
    """Send what ``plan`` says; the number of chunks sent."""
    if plan.restart:
        send_start(app, plan.run_id)
        return 0
    return send_chunks(app, plan.run_id, plan.chunks)

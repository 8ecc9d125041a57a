"""The three tasks of a run: plan and fan out, process one chunk, finish.

The ledger (``warehouse.ledger``) holds the state; these tasks only move it along and decide what
to retry. A chunk that fails for good records the failure and returns normally, because a chord
skips its callback when any header task raises.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery, Task
from celery.exceptions import Retry

from warehouse import ledger
from warehouse.backoff import backoff_seconds
from warehouse.metrics import recording as metrics
from warehouse.webhooks.outbox import take_unsent

from .canvas import send_chunks
from .logcontext import bind_claim, bind_run
from .reconcile import reconcile
from .retry import is_transient
from .webhooks import send_deliveries

logger = logging.getLogger(__name__)

# processFinished waits (re-queues itself) while chunks are unfinished, e.g. a redelivered chunk the
# chord counted twice. Past this many waits the reconciler takes over.
FINISH_WAIT_SECONDS = 5
FINISH_MAX_WAITS = 720
# The operation label of a chunk that failed before its claim could read the run's operation.
UNKNOWN_OPERATION = "unknown"


class WarehouseTask(Task):
    abstract = True

    @property
    def context(self):  # type: ignore[no-untyped-def]
        return self.app.warehouse

    def retry_if_transient(self, error: BaseException) -> None:
        """Raise a Retry, with exponential backoff and jitter, if ``error`` is transient and retries are left."""
        settings = self.context.settings
        max_retries = int(settings.get("warehouse.max_retries", self.max_retries))
        if not is_transient(error) or self.request.retries >= max_retries:
            return
        countdown = backoff_seconds(
            self.request.retries,
            factor=float(settings.get("warehouse.retry_backoff_seconds", 2)),
            maximum=float(settings.get("warehouse.retry_backoff_max_seconds", 120)),
        )
        logger.warning("%s %s: %s; retrying in %.1fs", self.name, self.request.args, error, countdown)
        raise self.retry(exc=error, countdown=countdown, max_retries=max_retries) from error


def process_whole_warehouse(self: WarehouseTask, run_id: int) -> int:
    """Plan the run's chunks in the ledger and dispatch them as a chord; returns the chunk count."""
    try:
        with self.context.transaction() as session:
            plan = ledger.plan_run(session, run_id)
            bind_run(session, run_id)
            deliveries = take_unsent(session)
    except Exception as error:
        self.retry_if_transient(error)
        raise
    send_deliveries(self.app, deliveries)
    if plan is None:
        logger.info("run %s was planned already; nothing to dispatch", run_id)
        return 0

    sent = send_chunks(self.app, run_id, plan)
    logger.info("run %s: dispatched %s chunks", run_id, sent)
    return sent


def process_some_products(self: WarehouseTask, run_id: int, start_id: int, end_id: int) -> str:
    """Do one chunk's work; record a permanent failure on the chunk instead of raising it.

    Returns a short word (done, failed, skipped): the chord keeps every result until the callback,
    so results stay small; the counts live in the ledger.
    """
    context = self.context
    presence = context.presence
    claimed = None
    started = 0.0
    try:
        # The claim commits before the work begins (a crash mid-work leaves the chunk claimed, for
        # a redelivery or the sweep to take over), but both go over one connection.
        holder = (self.request.hostname, self.request.id, presence and presence.worker_id)
        with context.one_connection() as db:
            if db.runs_single_statements_alone:
                # The common case, a pending chunk of a running run, is one statement.
                claimed = db.alone(lambda connection: ledger.claim_pending_chunk(connection, run_id, start_id, *holder))
            if claimed is None:
                with db.transaction() as session:
                    # Past the one statement (if it was tried): the row-by-row cases only.
                    claimed = ledger.claim_chunk(
                        session, run_id, start_id, *holder, pending_tried=db.runs_single_statements_alone
                    )
            if claimed is None:
                logger.info("run %s chunk %s-%s: finished, skipped or held by another task; nothing to do", run_id, start_id, end_id)
                metrics.chunk_skipped()
                return "skipped"
            bind_claim(claimed)
            started = time.perf_counter()
            with db.transaction() as session:
                outcome = ledger.do_chunk(session, claimed, context.settings)
    except ledger.ChunkLost:
        logger.warning("run %s chunk %s-%s was taken over; this attempt's work is rolled back", run_id, start_id, end_id)
        metrics.chunk_ended(claimed.operation if claimed else UNKNOWN_OPERATION, "lost")
        return "lost"
    except Exception as error:
        # The figures name the operation the claim read; a failure before any claim knows none.
        operation = claimed.operation if claimed else UNKNOWN_OPERATION
        try:
            self.retry_if_transient(error)
        except Retry:
            metrics.chunk_ended(operation, "retried")
            raise
        logger.exception("run %s chunk %s-%s failed for good", run_id, start_id, end_id)
        with context.transaction() as session:
            recorded = ledger.fail_chunk(
                session, run_id, start_id, f"{type(error).__name__}: {error}",
                attempt=claimed and claimed.attempt, task_id=self.request.id,
            )
        if recorded and presence:
            presence.count("failed")
        metrics.chunk_ended(operation, "failed" if recorded else "lost")
        return "failed" if recorded else "lost"
    if presence:
        presence.count("failed" if outcome.items_failed and not outcome.items_done else "done")
    metrics.chunk_ended(claimed.operation, "done", time.perf_counter() - started, outcome.items_done, outcome.items_failed)
    return "done"


def process_finished(self: WarehouseTask, results: list[Any], run_id: int) -> str:
    """Write the run's result and terminal status, once, when the ledger says every chunk ended."""
    try:
        with self.context.transaction() as session:
            outcome = ledger.finalise_run(session, run_id)
            bind_run(session, run_id)
            deliveries = take_unsent(session)
    except Exception as error:
        self.retry_if_transient(error)
        raise
    send_deliveries(self.app, deliveries)
    if outcome == ledger.FinaliseResult.WAIT:
        raise self.retry(countdown=FINISH_WAIT_SECONDS, max_retries=FINISH_MAX_WAITS)
    if outcome != ledger.FinaliseResult.DONE_ALREADY:
        logger.info("run %s finished: %s", run_id, outcome)
    return outcome


def reconcile_runs(self: WarehouseTask) -> dict[str, Any]:
    """Beat's every-minute sweep for runs whose messages were lost (see tasks/reconcile.py)."""
    return reconcile(self.app, self.context.session_factory, self.context.settings).as_json()


def register(app: Celery) -> None:
    """Register the three run tasks under the names the design fixes, and the reconciler."""
    common: dict[str, Any] = {"bind": True, "base": WarehouseTask, "acks_late": True, "max_retries": 5}
    app.task(name="processWholeWarehouse", **common)(process_whole_warehouse)
    app.task(name="processSomeProducts", **common)(process_some_products)
    app.task(name="processFinished", **common)(process_finished)
    # Not acks_late: a sweep lost with its worker is simply done again a minute later.
    app.task(name="reconcileRuns", bind=True, base=WarehouseTask, ignore_result=True)(reconcile_runs)

"""``purgeRunDetails``, which beat sends every hour: the chunk rows and item failures of runs that ended
more than ``warehouse.retain_run_details_days`` ago are deleted (warehouse/ledger/retention.py).

One short transaction per batch of at most ``warehouse.retention_batch_size`` rows, so a big purge
never holds locks for long or writes its whole WAL at once, until nothing is due or the time budget is
spent (the next hour's pass goes on from there). Two beats, or two workers at it, never take the same
run: each batch locks its runs with SKIP LOCKED, and passes by those another holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task
from sqlalchemy.orm import Session, sessionmaker

from warehouse.db import transaction
from warehouse.ledger import utcnow
from warehouse.ledger.retention import RetentionPolicy, purge_batch, retention_policy, runs_left_behind

logger = logging.getLogger(__name__)

# A pass holds one worker process of the runs' queue this long at most: other run-level tasks wait
# behind it only on that process.
BUDGET_SECONDS = 60.0


@dataclass
class PurgeReport:
    days: int
    runs: list[int] = field(default_factory=list)  # runs whose details this pass began removing
    chunks: int = 0
    item_failures: int = 0
    batches: int = 0
    finished: bool = False  # False: the time budget ran out with more due

    def as_json(self) -> dict[str, Any]:
        return {
            "retain_run_details_days": self.days,
            "runs_purged": self.runs,
            "chunks_deleted": self.chunks,
            "item_failures_deleted": self.item_failures,
            "batches": self.batches,
            "finished": self.finished,
        }


def purge_run_details(
    session_factory: sessionmaker[Session],
    policy: RetentionPolicy,
    budget_seconds: float | None = BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> PurgeReport:
    """Purge batch after batch until nothing is due, or ``budget_seconds`` have gone (None: no limit)."""
    report = PurgeReport(days=policy.days)
    started = clock()
    # One cutoff for the whole pass: a run that crosses it meanwhile is the next pass's.
    cutoff = policy.cutoff(utcnow())
    with transaction(session_factory) as session:
        unfinished = set(runs_left_behind(session))
    while budget_seconds is None or clock() - started < budget_seconds:
        with transaction(session_factory) as session:
            batch = purge_batch(session, cutoff, utcnow(), policy.batch_size, unfinished)
        if not batch.runs:
            report.finished = True
            break
        # A batch that did not fill up emptied its runs; one that did may have left rows in any of them.
        unfinished.difference_update(batch.runs)
        if batch.full:
            unfinished.update(batch.runs)
        report.batches += 1
        report.runs += batch.newly_purged
        report.chunks += batch.chunks
        report.item_failures += batch.item_failures
    if report.batches:
        logger.info("retention: %s", report.as_json())
    if not report.finished:
        logger.warning("retention: time budget of %s s spent with details still due; the next pass goes on", budget_seconds)
    return report


def purge_run_details_task(self: Task) -> dict[str, Any]:
    context = self.app.warehouse  # type: ignore[attr-defined]
    return purge_run_details(context.session_factory, retention_policy(context.settings)).as_json()


def register(app: Celery) -> None:
    """Register ``purgeRunDetails``; refuse the retention settings at start-up if they are nonsense."""
    retention_policy(app.warehouse.settings)  # type: ignore[attr-defined]
    # Not acks_late, and its result ignored: a pass lost with its worker is the next hour's to do.
    app.task(name="purgeRunDetails", bind=True, acks_late=False, ignore_result=True)(purge_run_details_task)

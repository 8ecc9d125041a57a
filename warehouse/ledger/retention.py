"""Retention: the chunk rows and item failures of runs that ended more than
``warehouse.retain_run_details_days`` ago are deleted, a bounded number of rows per transaction, so
that the two biggest tables of the ledger hold only recent runs. The run rows stay, with their
counters, result and error, and say when their details went (``details_purged_at``).

A run is marked in the first transaction that deletes any of its rows, under the run's row lock
(``FOR UPDATE SKIP LOCKED``, which also keeps two purgers off the same runs: each skips the other's).
A redrive locks the run too, so it either went first (the run is active again, and no longer due) or
finds the mark and is refused: it never sees half of a run's chunks. A purge cut short leaves a
marked run with rows, which the next one finishes.

Nothing else points at these rows: the only foreign key into ``run_chunks`` is the failures' own,
which go first; webhook events, schedule ticks and shipments' labels name the run or nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.orm import Session

from ..models import ACTIVE_RUN_STATUSES, Run, RunChunk, RunItemFailure, RunStatus, Warehouse

RETAIN_DAYS_SETTING = "warehouse.retain_run_details_days"
BATCH_SIZE_SETTING = "warehouse.retention_batch_size"
DEFAULT_RETAIN_DAYS = 30
MAX_RETAIN_DAYS = 36_500  # a hundred years: "keep them for ever" without a date before year 1
DEFAULT_BATCH_SIZE = 10_000
MAX_BATCH_SIZE = 1_000_000
# Runs locked by one transaction: enough that runs of a few chunks each fill a batch of rows.
RUNS_PER_BATCH = 100

ENDED_RUN_STATUSES = tuple(status for status in RunStatus if status not in ACTIVE_RUN_STATUSES)


@dataclass(frozen=True)
class RetentionPolicy:
    days: int = DEFAULT_RETAIN_DAYS
    batch_size: int = DEFAULT_BATCH_SIZE  # rows deleted per transaction, at most

    def cutoff(self, now: dt.datetime) -> dt.datetime:
        """Runs that ended before this have their details removed."""
        return now - dt.timedelta(days=self.days)


def _whole_number(settings: Mapping[str, Any], name: str, default: int, highest: int, unit: str) -> int:
    raw = settings.get(name)
    if raw is None:
        return default
    text = str(raw).strip().replace("_", "")
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= highest):
        raise ValueError(f"{name} must be a whole number of {unit} from 1 to {highest:,} (default {default:,}), not {raw!r}")
    return int(text)


def retention_policy(settings: Mapping[str, Any]) -> RetentionPolicy:
    """The policy the settings ask for; ValueError naming the setting if one is not a whole number
    in its range (0 too: keeping details for ever is a large number of days, never a silent 0)."""
    return RetentionPolicy(
        days=_whole_number(settings, RETAIN_DAYS_SETTING, DEFAULT_RETAIN_DAYS, MAX_RETAIN_DAYS, "days"),
        batch_size=_whole_number(settings, BATCH_SIZE_SETTING, DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, "rows"),
    )


def _has_details() -> ColumnElement[bool]:
    return exists().where(RunChunk.run_id == Run.id) | exists().where(RunItemFailure.run_id == Run.id)


def due_for_purge(cutoff: dt.datetime) -> ColumnElement[bool]:
    """Runs whose details are to go: ended before ``cutoff``, and not purged yet. An active run never.
    (What ``ix_runs_details_kept_finished_at`` answers, in the order it keeps.)"""
    return Run.details_purged_at.is_(None) & Run.status.in_(ENDED_RUN_STATUSES) & (Run.finished_at < cutoff)


def left_behind() -> ColumnElement[bool]:
    """Runs marked purged with rows still there: a purge cut short (its worker killed, its time spent).
    Those go whatever the period is now. Asking it looks at every purged run: once a pass, not a batch."""
    return Run.details_purged_at.is_not(None) & _has_details()


def runs_left_behind(session: Session) -> list[int]:
    return list(session.scalars(select(Run.id).where(left_behind()).order_by(Run.id)))


@dataclass
class PurgeBatch:
    """What one transaction removed."""

    runs: list[int] = field(default_factory=list)  # runs locked, and now marked purged
    newly_purged: list[int] = field(default_factory=list)  # those of them marked by this batch
    chunks: int = 0
    item_failures: int = 0
    full: bool = False  # the batch's rows ran out before its runs' did: some of them have rows left


def purge_batch(
    session: Session, cutoff: dt.datetime, now: dt.datetime, batch_size: int, unfinished: Collection[int] = ()
) -> PurgeBatch:
    """Mark up to RUNS_PER_BATCH runs due (or ``unfinished`` ones, marked with rows left) purged and
    delete up to ``batch_size`` of their rows, in the caller's transaction; an empty batch when
    nothing is left (or all of it is another purger's, whose locks are skipped, not waited on)."""
    chosen = due_for_purge(cutoff)
    if unfinished:
        chosen = chosen | (Run.id.in_(list(unfinished)) & left_behind())
    rows = session.execute(
        select(Run.id, Run.details_purged_at)
        .where(chosen)
        .order_by(Run.finished_at, Run.id)
        .limit(RUNS_PER_BATCH)
        .with_for_update(skip_locked=True, of=Run)
    ).all()
    batch = PurgeBatch(runs=[run_id for run_id, _ in rows], newly_purged=[run_id for run_id, at in rows if at is None])
    if not batch.runs:
        return batch
    # updated_at moves with every batch: the web processes keep an ended run's chunk map until it does.
    session.execute(
        update(Run)
        .where(Run.id.in_(batch.runs))
        .values(details_purged_at=func.coalesce(Run.details_purged_at, now), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    # Failures first: deleting a chunk would take its failures with it (the cascade), uncounted and
    # unbounded. Chunks only once every failure of these runs is gone, within what is left of the batch.
    batch.item_failures = _delete_some(session, RunItemFailure, RunItemFailure.run_id.in_(batch.runs), batch_size)
    if batch.item_failures < batch_size:
        batch.chunks = _delete_some(session, RunChunk, RunChunk.run_id.in_(batch.runs), batch_size - batch.item_failures)
    batch.full = batch.item_failures + batch.chunks == batch_size
    return batch


def _delete_some(session: Session, model: Any, condition: ColumnElement[bool], limit: int) -> int:
    """Delete at most ``limit`` rows of ``model`` matching ``condition`` (neither PostgreSQL nor
    SQLite, as built, has DELETE ... LIMIT); how many went."""
    some = select(model.id).where(condition).limit(limit)
    return session.execute(
        delete(model).where(model.id.in_(some)).execution_options(synchronize_session=False)
    ).rowcount


@dataclass(frozen=True)
class DueRun:
    """A run whose details the next purge removes, and how many rows that is (for a dry run)."""

    run_id: int
    warehouse: str
    operation: str
    status: str
    finished_at: dt.datetime | None
    details_purged_at: dt.datetime | None
    chunks: int
    item_failures: int


def runs_due(session: Session, cutoff: dt.datetime) -> list[DueRun]:
    """Every run the next purge would touch, oldest first, with its rows counted; changes nothing."""
    chunks = select(func.count()).where(RunChunk.run_id == Run.id).scalar_subquery()
    failures = select(func.count()).where(RunItemFailure.run_id == Run.id).scalar_subquery()
    rows = session.execute(
        select(Run.id, Warehouse.code, Run.operation, Run.status, Run.finished_at, Run.details_purged_at, chunks, failures)
        .join(Warehouse, Warehouse.id == Run.warehouse_id)
        .where(due_for_purge(cutoff) | left_behind())
        .order_by(Run.finished_at, Run.id)
    ).all()
    return [DueRun(*row) for row in rows]

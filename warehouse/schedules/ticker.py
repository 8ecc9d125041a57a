"""Due schedules become runs: exactly one run, or one skipped tick, per schedule and tick.

Any number of processes call ``fire_due_schedules`` at once (every worker process on its heartbeat,
every beat), so what is whose is decided in the database:

- each due schedule is fired in a transaction of its own, its row locked ``FOR UPDATE SKIP LOCKED``
  and read again (a process that finds it locked moves on; one that gets it after another's commit
  finds it no longer due);
- the tick is recorded in ``schedule_ticks``, unique on schedule and tick, in the same transaction as
  the run it starts: a process that gets there second loses on the unique key and its transaction,
  run and all, is rolled back;
- a process that dies mid-tick commits nothing, so the tick is simply still due for the next one.

The run's first task is sent by the caller once this has committed (tasks/schedules.py); if that
send is lost the run waits ``pending`` in the ledger, where the workers' sweep finds it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .. import ledger, operations
from ..db import transaction
from ..models import Schedule, ScheduleTick, TickOutcome, Warehouse
from .timing import latest_tick, next_tick, ticks_from_to

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Firing:
    """What one due schedule's tick came to."""

    schedule_id: int
    tick_at: dt.datetime
    outcome: str
    run_id: int | None = None
    active_run_id: int | None = None
    missed_ticks: int = 0


def due_schedule_ids(session: Session, now: dt.datetime) -> list[int]:
    return list(
        session.scalars(
            select(Schedule.id)
            .where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
            .order_by(Schedule.next_run_at)
        )
    )


def fire_due_schedules(
    session_factory: sessionmaker[Session],
    now: dt.datetime,
    chunk_size_for: Callable[[str], int] = lambda operation: operations.default_chunk_size(operation, {}),
) -> list[Firing]:
    """Fire every enabled schedule whose ``next_run_at`` is at or before ``now``; what each came to
    (committed). A schedule another process is firing, or fired first, is left out. A schedule that
    names no chunk size takes ``chunk_size_for(operation)`` at each tick."""
    with transaction(session_factory) as session:
        due = due_schedule_ids(session, now)
    firings = []
    for schedule_id in due:
        try:
            with transaction(session_factory) as session:
                firing = fire_schedule(session, schedule_id, now, chunk_size_for)
        except IntegrityError:
            logger.info("schedule %s: another process recorded this tick first", schedule_id)
            continue
        except Exception:  # noqa: BLE001 - one schedule failing must not hold up the others; it stays due
            logger.exception("schedule %s could not be fired; it is tried again on the next round", schedule_id)
            continue
        if firing is not None:
            firings.append(firing)
    return firings


def _lock_if_due(session: Session, schedule_id: int, now: dt.datetime) -> Schedule | None:
    return session.scalars(
        select(Schedule)
        .where(Schedule.id == schedule_id, Schedule.enabled.is_(True), Schedule.next_run_at <= now)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).one_or_none()


def fire_schedule(
    session: Session, schedule_id: int, now: dt.datetime, chunk_size_for: Callable[[str], int]
) -> Firing | None:
    """Fire one schedule in the caller's transaction, if it is still due and no one else holds it.

    Only the latest due tick runs: ticks missed while nothing was firing (everything down) are folded
    into it and counted in ``missed_ticks``, so an outage costs one run, not one per missed tick.
    Raises IntegrityError if another process recorded the same tick (the caller rolls back).
    """
    schedule = _lock_if_due(session, schedule_id, now)
    if schedule is None:
        return None
    first_due = schedule.next_run_at
    assert first_due is not None  # due, so set
    # next_run_at is a tick of the cron, so the latest tick is that one or later.
    tick = max(latest_tick(schedule.cron, schedule.timezone, now), _utc(first_due))
    missed = ticks_from_to(schedule.cron, schedule.timezone, first_due, tick)
    record = ScheduleTick(schedule_id=schedule.id, tick_at=tick, missed_ticks=missed, created_at=now)
    _start_or_skip(session, schedule, record, chunk_size_for)
    session.add(record)
    session.flush()  # the unique key on (schedule_id, tick_at) decides here
    schedule.next_run_at = next_tick(schedule.cron, schedule.timezone, now)
    session.flush()
    return Firing(schedule.id, tick, record.outcome, record.run_id, record.active_run_id, missed)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment


def _start_or_skip(session: Session, schedule: Schedule, record: ScheduleTick, chunk_size_for: Callable[[str], int]) -> None:
    """Start the tick's run through the ledger, or record why it starts none."""
    warehouse = session.get_one(Warehouse, schedule.warehouse_id)
    if schedule.operation not in operations.names():
        record.outcome = TickOutcome.SKIPPED
        record.reason = f"operation {schedule.operation!r} is not known to this service any more"
        return
    try:
        run = ledger.create_run(
            session,
            warehouse,
            schedule.operation,
            chunk_size=schedule.chunk_size or chunk_size_for(schedule.operation),
            tolerated_failure_percent=schedule.tolerated_failure_percent,
            schedule_id=schedule.id,
            scheduled_for=record.tick_at,
        )
    except ledger.ActiveRunExists as exists:
        record.outcome = TickOutcome.SKIPPED
        record.active_run_id = exists.run_id
        record.reason = (
            f"run {exists.run_id} of {schedule.operation} was still active on warehouse {warehouse.code}: "
            f"one run of an operation at a time"
        )
        return
    record.outcome = TickOutcome.STARTED
    record.run_id = run.id

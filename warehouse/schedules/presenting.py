"""JSON shapes of schedules and their ticks, shared by the API and ``warehouse-schedule``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Schedule, ScheduleTick
from ..presenters import isoformat
from .timing import local_time


def tick_json(tick: ScheduleTick, timezone: str) -> dict[str, Any]:
    return {
        "id": tick.id,
        "tick_at": isoformat(tick.tick_at),
        "tick_at_local": isoformat(local_time(tick.tick_at, timezone)),
        "outcome": tick.outcome,
        "run_id": tick.run_id,
        "active_run_id": tick.active_run_id,
        "reason": tick.reason,
        "missed_ticks": tick.missed_ticks,
        "recorded_at": isoformat(tick.created_at),
    }


RECENT_TICKS = 5


def schedule_json(schedule: Schedule, warehouse_code: str, recent: list[ScheduleTick]) -> dict[str, Any]:
    """The schedule, with its ``recent`` ticks (newest first)."""
    return {
        "id": schedule.id,
        "warehouse": warehouse_code,
        "operation": schedule.operation,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "chunk_size": schedule.chunk_size,
        "tolerated_failure_percent": float(schedule.tolerated_failure_percent or 0),
        "enabled": schedule.enabled,
        "next_run_at": isoformat(schedule.next_run_at),
        "next_run_at_local": isoformat(local_time(schedule.next_run_at, schedule.timezone)),
        "recent_ticks": [tick_json(tick, schedule.timezone) for tick in recent],
        "created_at": isoformat(schedule.created_at),
        "updated_at": isoformat(schedule.updated_at),
        "links": {"self": f"/api/schedules/{schedule.id}"},
    }


def recent_ticks(session: Session, schedule_ids: list[int], per_schedule: int = RECENT_TICKS) -> dict[int, list[ScheduleTick]]:
    """Each schedule's newest ticks, newest first, by schedule id, in one query."""
    found: dict[int, list[ScheduleTick]] = {schedule_id: [] for schedule_id in schedule_ids}
    if not schedule_ids:
        return found
    ranked = (
        select(
            ScheduleTick.id,
            func.row_number().over(partition_by=ScheduleTick.schedule_id, order_by=ScheduleTick.id.desc()).label("rank"),
        )
        .where(ScheduleTick.schedule_id.in_(schedule_ids))
        .subquery()
    )
    newest = select(ranked.c.id).where(ranked.c.rank <= per_schedule)
    for tick in session.scalars(select(ScheduleTick).where(ScheduleTick.id.in_(newest)).order_by(ScheduleTick.id.desc())):
        found[tick.schedule_id].append(tick)
    return found


def ticks_page(session: Session, schedule_id: int, limit: int, before_id: int | None) -> tuple[list[ScheduleTick], bool]:
    """A page of the schedule's ticks, newest first, and whether there are more."""
    statement = select(ScheduleTick).where(ScheduleTick.schedule_id == schedule_id)
    if before_id is not None:
        statement = statement.where(ScheduleTick.id < before_id)
    rows = list(session.scalars(statement.order_by(ScheduleTick.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit

"""Adding, changing, pausing and deleting schedules: one code path for the API and ``warehouse-schedule``.

Each function checks everything it was given before it writes anything, and refuses in words with a
``FieldError`` naming the field (the API answers it as it is; the command prints its message), so a
refusal leaves the database as it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import operations
from ..errors import ApiError, FieldError
from ..ledger import utcnow
from ..models import Schedule, Warehouse
from ..settings import MAX_CHUNK_SIZE
from .timing import next_tick, parse_cron, parse_timezone

EDITABLE = ("operation", "cron", "timezone", "chunk_size", "tolerated_failure_percent", "enabled")
# What decides when the ticks fall: changing one of these starts again from the next tick after now.
TIMING = ("cron", "timezone", "enabled")


def schedule_or_404(session: Session, schedule_id: int) -> tuple[Schedule, str]:
    """The schedule and its warehouse's code; 404 naming ``id`` if there is none."""
    row = session.execute(
        select(Schedule, Warehouse.code).join(Warehouse, Warehouse.id == Schedule.warehouse_id).where(Schedule.id == schedule_id)
    ).one_or_none()
    if row is None:
        raise ApiError(404, "schedule_not_found", f"no schedule with id {schedule_id}", {"field": "id"})
    return row[0], row[1]


def _checked(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` as they will be stored; a FieldError for the first that cannot be.

    The API's document already bounds the numbers; the command's arguments arrive unchecked, so the
    same bounds are held here too.
    """
    checked = dict(fields)
    if "operation" in fields and fields["operation"] not in operations.names():
        raise FieldError(
            "operation", f"operation is not one this service knows (known: {', '.join(operations.names())})", 422
        )
    if "cron" in fields:
        checked["cron"] = parse_cron(fields["cron"])
    if "timezone" in fields:
        parse_timezone(fields["timezone"])
    chunk_size = fields.get("chunk_size")
    if chunk_size is not None and not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise FieldError("chunk_size", f"chunk_size must be from 1 to {MAX_CHUNK_SIZE:,}")
    if "tolerated_failure_percent" in fields:
        percent = Decimal(str(fields["tolerated_failure_percent"]))
        if not 0 <= percent <= 100:
            raise FieldError("tolerated_failure_percent", "tolerated_failure_percent must be from 0 to 100")
        checked["tolerated_failure_percent"] = percent
    if "enabled" in fields and not isinstance(fields["enabled"], bool):
        raise FieldError("enabled", "enabled must be true or false")
    return checked


def create_schedule(
    session: Session, warehouse: Warehouse, fields: Mapping[str, Any], now: dt.datetime | None = None
) -> Schedule:
    """A new schedule of ``warehouse`` (``fields``: operation and cron, and any of the others)."""
    for required in ("operation", "cron"):
        if required not in fields:
            raise FieldError(required, f"{required} is required")
    checked = {"timezone": "UTC", "tolerated_failure_percent": Decimal(0), "enabled": True, **_checked(fields)}
    now = now or utcnow()
    schedule = Schedule(warehouse_id=warehouse.id, created_at=now, updated_at=now, **checked)
    schedule.next_run_at = next_tick(schedule.cron, schedule.timezone, now) if schedule.enabled else None
    session.add(schedule)
    session.flush()
    return schedule


def update_schedule(
    session: Session, schedule: Schedule, fields: Mapping[str, Any], now: dt.datetime | None = None
) -> Schedule:
    """Change what ``fields`` names. Pausing (enabled false) clears ``next_run_at``; resuming, or a
    new cron or time zone, sets it to the next tick after now: the ticks missed meanwhile never run."""
    if not fields:
        raise FieldError("body", f"send at least one of: {', '.join(EDITABLE)}")
    checked = _checked(fields)
    now = now or utcnow()
    retimed = any(name in checked and checked[name] != getattr(schedule, name) for name in TIMING)
    for name, value in checked.items():
        setattr(schedule, name, value)
    if retimed or (schedule.enabled and schedule.next_run_at is None):
        schedule.next_run_at = next_tick(schedule.cron, schedule.timezone, now) if schedule.enabled else None
    schedule.updated_at = now
    session.flush()
    return schedule


def delete_schedule(session: Session, schedule: Schedule) -> None:
    """Delete the schedule and its ticks; the runs it started stay, without their schedule_id."""
    session.delete(schedule)
    session.flush()


def list_schedules(session: Session, warehouse_id: int | None = None) -> list[tuple[Schedule, str]]:
    """Schedules (of one warehouse, or all) with their warehouse's code, oldest first."""
    statement = select(Schedule, Warehouse.code).join(Warehouse, Warehouse.id == Schedule.warehouse_id)
    if warehouse_id is not None:
        statement = statement.where(Schedule.warehouse_id == warehouse_id)
    return [(schedule, code) for schedule, code in session.execute(statement.order_by(Schedule.id))]

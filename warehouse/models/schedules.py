"""Schedules: runs that start by themselves, on a cron, in a time zone; and each tick's outcome.

Kept in the database, not in beat's memory or Redis: a tick is recorded once (unique on schedule and
tick), so however many processes look at the clock, each tick starts at most one run.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .inventory import BigIntKey
from .meta import Base


class TickOutcome(enum.StrEnum):
    STARTED = "started"  # the tick started run_id
    SKIPPED = "skipped"  # a run of the same operation was still active (active_run_id), or another reason


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (
        Index("ix_schedules_warehouse_id", "warehouse_id"),
        # What the ticker asks every few seconds: the enabled schedules that are due.
        Index(
            "ix_schedules_due",
            "next_run_at",
            postgresql_where=text("enabled"),
            sqlite_where=text("enabled"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id", ondelete="CASCADE"))
    operation: Mapped[str] = mapped_column(String(64))
    cron: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    chunk_size: Mapped[int | None] = mapped_column(Integer)
    tolerated_failure_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # The next tick, in UTC; None while paused.
    next_run_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ScheduleTick(Base):
    """A tick of a schedule that came due: the run it started, or why it started none."""

    __tablename__ = "schedule_ticks"
    __table_args__ = (UniqueConstraint("schedule_id", "tick_at", name="uq_schedule_ticks_schedule_id_tick_at"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    tick_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(20))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # For a skipped tick: the active run it found, and the reason in words.
    active_run_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    # How many earlier ticks were missed (everything down) and folded into this one.
    missed_ticks: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

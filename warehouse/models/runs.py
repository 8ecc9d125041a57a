"""The ledger of batch runs: the database, not the broker, is the source of truth for their state."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .inventory import BigIntKey
from .meta import Base


class RunStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    PARTIALLY_FAILED = "partially_failed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.CANCELLING)


class ChunkStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # never run: the run was cancelled, or failed early past its threshold


UNFINISHED_CHUNK_STATUSES = (ChunkStatus.PENDING, ChunkStatus.RUNNING)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # At most one active run of an operation per warehouse, enforced by the database so two
        # concurrent POSTs cannot both get in.
        Index(
            "uq_runs_one_active_per_operation",
            "warehouse_id",
            "operation",
            unique=True,
            postgresql_where=text("status IN ('pending', 'running', 'cancelling')"),
            sqlite_where=text("status IN ('pending', 'running', 'cancelling')"),
        ),
        Index("ix_runs_warehouse_id_id", "warehouse_id", "id"),
        # What retention asks every batch: the ended runs whose details are still kept, oldest first.
        # Purged runs leave it, so it holds about the retention period's runs however old the ledger.
        Index(
            "ix_runs_details_kept_finished_at",
            "finished_at",
            postgresql_where=text("details_purged_at IS NULL"),
            sqlite_where=text("details_purged_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id", ondelete="CASCADE"))
    operation: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.PENDING)
    chunk_size: Mapped[int] = mapped_column(Integer)
    tolerated_failure_percent: Mapped[Decimal] = mapped_column(Numeric(5, 2), default=0)
    # Highest item id the plan covers: items created after planning are not part of the run.
    last_item_id: Mapped[int | None] = mapped_column(BigIntKey)

    # Progress counters, bumped in the same transaction that finishes a chunk, so a poll reads one row.
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_failed: Mapped[int] = mapped_column(Integer, default=0)
    chunks_skipped: Mapped[int] = mapped_column(Integer, default=0)
    items_total: Mapped[int] = mapped_column(Integer, default=0)
    items_done: Mapped[int] = mapped_column(Integer, default=0)
    items_failed: Mapped[int] = mapped_column(Integer, default=0)

    # A run a schedule started: which, and the tick it was for (None for a run someone started).
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))
    scheduled_for: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)
    cancel_requested_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # How often the run's failed (or skipped) chunks were sent again in the same run, and the last time.
    redrive_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    redriven_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # When retention began removing the run's chunk rows and item failures (warehouse/ledger/
    # retention.py); None while they are kept. Set before the first row goes, so a run without it
    # still has every one of them.
    details_purged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_utcnow, onupdate=_utcnow, server_default=func.now()
    )


class RunChunk(Base):
    __tablename__ = "run_chunks"
    __table_args__ = (
        UniqueConstraint("run_id", "start_id", name="uq_run_chunks_run_id_start_id"),
        Index("ix_run_chunks_run_id_status", "run_id", "status"),
        # What the sweep asks every few seconds: the running chunks of workers that stopped answering.
        Index(
            "ix_run_chunks_running_worker_id",
            "worker_id",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    start_id: Mapped[int] = mapped_column(BigIntKey)
    end_id: Mapped[int] = mapped_column(BigIntKey)
    item_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=ChunkStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    items_done: Mapped[int] = mapped_column(Integer, default=0)
    items_failed: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    worker_hostname: Mapped[str | None] = mapped_column(String(255))
    # The worker process holding (or that last held) the chunk: when it stops heartbeating, the chunk
    # is released and sent again.
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("workers.id", ondelete="SET NULL"))
    # The Celery task id of the current claim: a redelivery of that same message may take the claim
    # over (its first execution died); any other message must leave a running chunk alone.
    task_id: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class RunItemFailure(Base):
    """One item an operation could not process, with the reason (what the failures endpoint lists)."""

    __tablename__ = "run_item_failures"
    __table_args__ = (
        Index("ix_run_item_failures_run_id_id", "run_id", "id"),
        # Deleting a chunk makes the database look up its failures by chunk_id (the foreign key's
        # cascade): without this index, each chunk retention deletes would scan the whole table.
        Index("ix_run_item_failures_chunk_id", "chunk_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    chunk_id: Mapped[int] = mapped_column(ForeignKey("run_chunks.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(BigIntKey)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)

"""A run from its POST to its chunk rows: recording it, then cutting its items into keyset ranges."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, case, func, insert, literal, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from .. import operations
from ..models import ACTIVE_RUN_STATUSES, ChunkStatus, Run, RunChunk, RunStatus, Warehouse
from ..webhooks.outbox import record_run_event
from .shared import ChunkBounds, utcnow


class ActiveRunExists(Exception):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} of this operation is still active on this warehouse")
        self.run_id = run_id


def active_run_id(session: Session, warehouse_id: int, operation: str) -> int | None:
    return session.scalar(
        select(Run.id).where(
            Run.warehouse_id == warehouse_id,
            Run.operation == operation,
            Run.status.in_(ACTIVE_RUN_STATUSES),
        )
    )


def create_run(
    session: Session,
    warehouse: Warehouse,
    operation: str,
    chunk_size: int,
    tolerated_failure_percent: Decimal = Decimal(0),
    schedule_id: int | None = None,
    scheduled_for: dt.datetime | None = None,
) -> Run:
    """Record a pending run (a schedule's: ``schedule_id`` and its tick, ``scheduled_for``). The caller
    enqueues ``processWholeWarehouse`` once this commits."""
    active = active_run_id(session, warehouse.id, operation)
    if active is not None:
        raise ActiveRunExists(active)
    run = Run(
        warehouse_id=warehouse.id,
        operation=operation,
        status=RunStatus.PENDING,
        chunk_size=chunk_size,
        tolerated_failure_percent=tolerated_failure_percent,
        schedule_id=schedule_id,
        scheduled_for=scheduled_for,
    )
    try:
        # A savepoint, so losing the race on the partial unique index leaves the caller's
        # transaction usable for the 409 answer.
        with session.begin_nested():
            session.add(run)
    except IntegrityError:
        raise ActiveRunExists(active_run_id(session, warehouse.id, operation) or 0) from None
    return run


def plan_run(session: Session, run_id: int) -> list[ChunkBounds] | None:
    """Move a pending run to running and write its chunk rows; None if it was planned already.

    Chunk boundaries are computed by the database in one statement (``chunk_bounds``): no ids are
    loaded into Python, whatever the run's size.
    """
    started = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.PENDING)
        .values(status=RunStatus.RUNNING, started_at=utcnow())
        .returning(Run.warehouse_id, Run.operation, Run.chunk_size, Run.started_at)
    ).one_or_none()
    if started is None:
        return None
    warehouse_id, operation_name, chunk_size, started_at = started
    operation = operations.get(operation_name)

    covered = operation.item_ids(warehouse_id, started_at.date()).subquery()
    plan = chunk_bounds(covered, chunk_size, run_id)
    without_jit(session)
    session.execute(
        insert(RunChunk).from_select(
            ["run_id", "seq", "start_id", "end_id", "item_count", "status", "attempts", "items_done", "items_failed"],
            plan,
        )
    )
    chunks_total, items_total, last_item_id = session.execute(
        select(func.count(), func.coalesce(func.sum(RunChunk.item_count), 0), func.max(RunChunk.end_id)).where(
            RunChunk.run_id == run_id
        )
    ).one()
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(chunks_total=chunks_total, items_total=items_total, last_item_id=last_item_id)
    )
    record_run_event(session, run_id, RunStatus.RUNNING)
    return pending_chunks(session, run_id)


def without_jit(session: Session) -> None:
    """Turn PostgreSQL's JIT off for the rest of the transaction (nothing elsewhere): it compiled the
    planning statement for longer than it ran, 0.6-0.7 s of 2.0 s at 10,000,000 products, all of it
    before the first chunk can start."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


def chunk_bounds(covered: Subquery, chunk_size: int, run_id: int) -> Select[Any]:
    """Rows for ``run_chunks``: the covered ids cut into keyset ranges of ``chunk_size``.

    Each chunk's first id is found from the one before by skipping ``chunk_size`` ids along the index
    (a recursive query), so the database reads every covered id once, but does nothing per id besides:
    numbering all of them with a window function and grouping them took 4-9 s at 10,000,000 products,
    this 1.4-1.9 s. A chunk ends at the last covered id before the next chunk's first.
    """
    covered_id = covered.c.id
    first_id = select(func.min(covered_id)).scalar_subquery()
    starts = select(literal(0).label("seq"), first_id.label("start_id")).cte("chunk_starts", recursive=True)
    next_start = (
        select(covered_id).where(covered_id > starts.c.start_id).order_by(covered_id).offset(chunk_size - 1).limit(1)
    ).scalar_subquery()
    starts = starts.union_all(select(starts.c.seq + 1, next_start).where(starts.c.start_id.is_not(None)))
    chunks = select(
        starts.c.seq,
        starts.c.start_id,
        func.lead(starts.c.start_id).over(order_by=starts.c.seq).label("next_start"),
    ).where(starts.c.start_id.is_not(None)).subquery()
    is_last = chunks.c.next_start.is_(None)
    end_id = case(
        (is_last, select(func.max(covered_id)).scalar_subquery()),
        else_=select(func.max(covered_id)).where(covered_id < chunks.c.next_start).scalar_subquery(),
    )
    item_count = case(
        (is_last, select(func.count()).select_from(covered).where(covered_id >= chunks.c.start_id).scalar_subquery()),
        else_=literal(chunk_size),
    )
    return select(
        literal(run_id),
        chunks.c.seq,
        chunks.c.start_id,
        end_id,
        item_count,
        literal(ChunkStatus.PENDING.value),
        literal(0),
        literal(0),
        literal(0),
    )


def pending_chunks(session: Session, run_id: int) -> list[ChunkBounds]:
    """The chunks of a run that have not started, in order: what a dispatch sends."""
    rows = session.execute(
        select(RunChunk.start_id, RunChunk.end_id)
        .where(RunChunk.run_id == run_id, RunChunk.status == ChunkStatus.PENDING)
        .order_by(RunChunk.seq)
    )
    return [ChunkBounds(start, end) for start, end in rows]

"""Worker processes in the ledger: their heartbeats, and what becomes of the chunks of those that stop.

Every process that runs chunk tasks has a ``workers`` row and heartbeats it; a running chunk names the
process that claimed it. A process silent for ``dead_after`` seconds, or one that said it stopped, has
its running chunks put back to pending, and whoever swept sends them again. Any live worker may
sweep; one at a time (a PostgreSQL advisory lock), so two sweepers never send the same chunks twice.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from ..models import ChunkStatus, Run, RunChunk, RunStatus, WorkerProcess
from .planning import pending_chunks
from .shared import ChunkBounds, utcnow

def heartbeat_seconds(settings: Mapping[str, Any]) -> float:
    return float(settings.get("warehouse.worker_heartbeat_seconds", 5))


def dead_after_seconds(settings: Mapping[str, Any]) -> float:
    return float(settings.get("warehouse.worker_dead_after_seconds", 15))


# Any constant will do, as long as nothing else in the database takes the same advisory lock.
SWEEP_LOCK_KEY = 0x77617265  # "ware"


def register_worker(session: Session, node: str, hostname: str, pid: int) -> int:
    """A new row for this process; its id is what its claims and heartbeats name."""
    now = database_now(session)
    return session.execute(
        insert(WorkerProcess)
        .values(node=node, hostname=hostname, pid=pid, started_at=now, last_seen_at=now, chunks_done=0, chunks_failed=0)
        .returning(WorkerProcess.id)
    ).scalar_one()


def heartbeat(session: Session, worker_id: int, chunks_done: int, chunks_failed: int, stopping: bool = False) -> bool:
    """Say this process is alive (or, with ``stopping``, that it has ended cleanly); False if its row is
    gone (pruned after a long freeze), in which case the process should register again."""
    now = database_now(session)
    values = {"last_seen_at": now, "chunks_done": chunks_done, "chunks_failed": chunks_failed}
    if stopping:
        values["stopped_at"] = now
    return session.execute(update(WorkerProcess).where(WorkerProcess.id == worker_id).values(**values)).rowcount == 1


def alive_condition(dead_before: dt.datetime):  # type: ignore[no-untyped-def]
    return (WorkerProcess.stopped_at.is_(None)) & (WorkerProcess.last_seen_at >= dead_before)


def take_sweep_lock(session: Session) -> bool:
    """The sweep's turn for this transaction, or False if another process is sweeping right now.

    SQLite has no advisory locks, and needs none: it has one writer at a time, in one process.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK_KEY))))


@dataclass
class Released:
    """Chunks put back to pending because their holder is gone, by run: the caller sends them again."""

    chunks: dict[int, list[ChunkBounds]] = field(default_factory=lambda: defaultdict(list))

    def __bool__(self) -> bool:
        return bool(self.chunks)


def release_chunks_of_lost_workers(session: Session, dead_before: dt.datetime) -> Released:
    """Put back to pending every running chunk whose worker stopped, or has not heartbeaten since
    ``dead_before``. Rows locked by a transaction still open (a frozen node's) are skipped: they are
    released by a later sweep, once PostgreSQL has ended that transaction."""
    lost = (
        select(RunChunk.id)
        .join(WorkerProcess, WorkerProcess.id == RunChunk.worker_id)
        .where(RunChunk.status == ChunkStatus.RUNNING, ~alive_condition(dead_before))
        .with_for_update(of=RunChunk, skip_locked=True)
    )
    rows = session.execute(
        update(RunChunk)
        .where(RunChunk.id.in_(lost.scalar_subquery()), RunChunk.status == ChunkStatus.RUNNING)
        .values(status=ChunkStatus.PENDING, task_id=None)
        .returning(RunChunk.run_id, RunChunk.seq, RunChunk.start_id, RunChunk.end_id)
        .execution_options(synchronize_session=False)
    ).all()
    released = Released()
    for run_id, _seq, start_id, end_id in sorted(rows):
        released.chunks[run_id].append(ChunkBounds(start_id, end_id))
    if released:
        session.execute(update(Run).where(Run.id.in_(released.chunks)).values(updated_at=utcnow()))
    return released


@dataclass
class QuietRuns:
    """Active runs nobody has moved for a while, sorted by what would get each going again.

    ``finish``: nothing left to run (or cancelling with nothing running): it only needs its callback.
    ``resend``: chunks pending, none running: their messages may be lost (the caller checks the queue).
    ``start``: still pending: its first task may be lost (likewise).
    """

    finish: list[int] = field(default_factory=list)
    resend: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)


def quiet_runs(session: Session, quiet_before: dt.datetime) -> QuietRuns:
    """Active runs not updated since ``quiet_before`` (a chunk finishing updates its run)."""
    runs = session.execute(
        select(Run.id, Run.status, Run.chunks_total - Run.chunks_done - Run.chunks_failed - Run.chunks_skipped)
        .where(Run.status.in_((RunStatus.PENDING, RunStatus.RUNNING, RunStatus.CANCELLING)), Run.updated_at < quiet_before)
        .order_by(Run.id)
    ).all()
    quiet = QuietRuns()
    active = [run_id for run_id, status, _ in runs if status != RunStatus.PENDING]
    running = dict(
        session.execute(
            select(RunChunk.run_id, func.count())
            .where(RunChunk.run_id.in_(active), RunChunk.status == ChunkStatus.RUNNING)
            .group_by(RunChunk.run_id)
        ).all()
    ) if active else {}
    for run_id, status, unfinished in runs:
        if status == RunStatus.PENDING:
            quiet.start.append(run_id)
        elif running.get(run_id):
            continue  # a live worker holds some of it (the dead ones' chunks were released first)
        elif unfinished == 0 or status == RunStatus.CANCELLING:
            quiet.finish.append(run_id)
        else:
            quiet.resend.append(run_id)
    return quiet


def chunks_to_resend(session: Session, run_id: int) -> list[ChunkBounds]:
    """A quiet running run's pending chunks, and the run touched so the next sweep gives them time."""
    touch_runs(session, [run_id])
    return pending_chunks(session, run_id)


def touch_runs(session: Session, run_ids: list[int]) -> None:
    if run_ids:
        session.execute(update(Run).where(Run.id.in_(run_ids)).values(updated_at=utcnow()))


def prune_workers(session: Session, gone_before: dt.datetime) -> int:
    """Forget processes not seen since ``gone_before`` (their chunks keep their history, minus the id)."""
    return session.execute(
        WorkerProcess.__table__.delete().where(WorkerProcess.last_seen_at < gone_before)
    ).rowcount


@dataclass(frozen=True)
class HeldChunk:
    run_id: int
    start_id: int
    end_id: int
    attempt: int
    started_at: dt.datetime | None


@dataclass(frozen=True)
class WorkerView:
    id: int
    node: str
    hostname: str
    pid: int
    started_at: dt.datetime
    last_seen_at: dt.datetime
    stopped_at: dt.datetime | None
    alive: bool
    running: list[HeldChunk]
    chunks_done: int
    chunks_failed: int


def list_workers(session: Session, dead_before: dt.datetime, limit: int, alive: bool | None = None) -> list[WorkerView]:
    """Worker processes, the live ones first, then the most recently seen; with the chunks each holds."""
    is_alive = alive_condition(dead_before)
    query = select(WorkerProcess, is_alive.label("alive"))
    if alive is not None:
        query = query.where(is_alive if alive else ~is_alive)
    rows = session.execute(
        query.order_by(is_alive.desc(), WorkerProcess.last_seen_at.desc(), WorkerProcess.id.desc()).limit(limit)
    ).all()
    held: dict[int, list[HeldChunk]] = defaultdict(list)
    ids = [worker.id for worker, _ in rows]
    if ids:
        for worker_id, *chunk in session.execute(
            select(RunChunk.worker_id, RunChunk.run_id, RunChunk.start_id, RunChunk.end_id, RunChunk.attempts, RunChunk.started_at)
            .where(RunChunk.worker_id.in_(ids), RunChunk.status == ChunkStatus.RUNNING)
            .order_by(RunChunk.run_id, RunChunk.start_id)
        ):
            held[worker_id].append(HeldChunk(*chunk))
    return [
        WorkerView(
            id=worker.id,
            node=worker.node,
            hostname=worker.hostname,
            pid=worker.pid,
            started_at=worker.started_at,
            last_seen_at=worker.last_seen_at,
            stopped_at=worker.stopped_at,
            alive=bool(is_live),
            running=held.get(worker.id, []),
            chunks_done=worker.chunks_done,
            chunks_failed=worker.chunks_failed,
        )
        for worker, is_live in rows
    ]


def count_alive_workers(session: Session, settings: Mapping[str, Any]) -> int:
    """Worker processes heartbeating now (the metrics' warehouse_workers_alive, the autoscalers' backlog)."""
    dead_before = database_now(session) - dt.timedelta(seconds=dead_after_seconds(settings))
    return session.scalar(select(func.count()).select_from(WorkerProcess).where(alive_condition(dead_before))) or 0


def database_now(session: Session) -> dt.datetime:
    """The database's clock: heartbeats and the dead-worker cutoff are compared on one clock, so a
    node whose clock runs fast or slow is neither declared dead early nor kept alive late."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(text("SELECT now()"))
    return utcnow()

"""Worker processes, as the ledger knows them: who holds which chunk, and who is still alive."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .inventory import BigIntKey
from .meta import Base


class WorkerProcess(Base):
    """One process that runs chunk tasks (a prefork pool child, or an embedded worker's process).

    It writes ``last_seen_at`` every ``warehouse.worker_heartbeat_seconds``; without a heartbeat for
    ``warehouse.worker_dead_after_seconds`` it counts as dead, and the chunks it holds are sent again.
    A row is never reused: a restarted process is a new row, so a chunk's ``worker_id`` always names
    the very process that claimed it.
    """

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_last_seen_at", "last_seen_at"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    # The Celery node name (``w1@host``): several nodes may share a machine, or a network namespace.
    node: Mapped[str] = mapped_column(String(255))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # Set when the process ended cleanly (warm shutdown, a pool child replaced): no need to wait for
    # the dead-worker timeout before sending again whatever it still held.
    stopped_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Counted by the process itself and written with each heartbeat, so chunks pay nothing for them.
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_failed: Mapped[int] = mapped_column(Integer, default=0)

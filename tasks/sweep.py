"""The sweep every live worker process makes every few seconds, so that no run waits on a lost node.

One process at a time (``ledger.take_sweep_lock``), in one short transaction, it:

- releases the running chunks of worker processes that stopped or went silent, and sends them again;
- sends ``processFinished`` to active runs that have nothing left running but did not end (their
  callback was lost with a node, or never fired);
- sends again the pending chunks of running runs that nothing holds and nothing moved for a while,
  and the first task of runs still pending, but only when the broker's queues are empty: otherwise
  those messages may simply be waiting their turn.

What it sends is sent after its transaction commits. Sending a chunk twice costs a message, not
work: the second delivery finds the chunk claimed or done and does nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from warehouse import ledger
from warehouse.db import transaction
from warehouse.ledger import workers as fleet

from .canvas import send_chunks, send_finish, send_start
from .queues import ready_messages

logger = logging.getLogger(__name__)

# Worker rows are kept this long after their last heartbeat, for GET /api/workers and the run pages.
WORKER_ROWS_KEPT = dt.timedelta(days=7)


@dataclass
class SweepReport:
    swept: bool = False  # False: another process held the sweep lock
    released: dict[int, int] = field(default_factory=dict)  # run id -> chunks released and re-sent
    finished: list[int] = field(default_factory=list)
    resent: dict[int, int] = field(default_factory=dict)  # run id -> pending chunks re-sent
    started: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "swept": self.swept,
            "released": [{"run_id": run_id, "chunks_sent": sent} for run_id, sent in self.released.items()],
            "finished": self.finished,
            "resent": [{"run_id": run_id, "chunks_sent": sent} for run_id, sent in self.resent.items()],
            "started": self.started,
        }

    def __bool__(self) -> bool:
        return bool(self.released or self.finished or self.resent or self.started)


def sweep(app: Celery, session_factory: sessionmaker[Session], settings: Mapping[str, Any]) -> SweepReport:
    report = SweepReport()
    with transaction(session_factory) as session:
        if not fleet.take_sweep_lock(session):
            return report
        report.swept = True
        now = fleet.database_now(session)
        quiet_before = now - dt.timedelta(seconds=fleet.dead_after_seconds(settings))
        released = fleet.release_chunks_of_lost_workers(session, dead_before=quiet_before)
        quiet = fleet.quiet_runs(session, quiet_before)
        report.finished = quiet.finish
        fleet.touch_runs(session, report.finished)
        fleet.prune_workers(session, gone_before=now - WORKER_ROWS_KEPT)
    for run_id, chunks in released.chunks.items():
        report.released[run_id] = send_chunks(app, run_id, chunks)
    for run_id in report.finished:
        send_finish(app, run_id)

    # The queues are counted outside any transaction: a slow broker must not keep one open (worker
    # sessions idle in a transaction are ended after a few seconds).
    if (quiet.resend or quiet.start) and _queues_empty(app):
        to_send: dict[int, list[ledger.ChunkBounds]] = {}
        with transaction(session_factory) as session:
            if not fleet.take_sweep_lock(session):
                return report
            for run_id in quiet.resend:
                to_send[run_id] = fleet.chunks_to_resend(session, run_id)
            report.started = quiet.start
            fleet.touch_runs(session, report.started)
        for run_id, chunks in to_send.items():
            report.resent[run_id] = send_chunks(app, run_id, chunks)
        for run_id in report.started:
            send_start(app, run_id)
    if report:
        logger.warning("sweep: %s", report.as_json())
    return report


def _queues_empty(app: Celery) -> bool:
    try:
        return ready_messages(app) == 0
    except Exception as error:  # noqa: BLE001 - the broker unreachable: leave it to the next sweep
        logger.warning("sweep: cannot count queued messages (%s); not re-sending quiet runs", error)
        return False

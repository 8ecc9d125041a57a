"""Find runs the broker lost and get them going again from the ledger.

Messages get lost: Redis restarted or flushed, a node killed with messages it had not acknowledged
(Redis gives those back only after the visibility timeout), the broker down when a run was posted.
The ledger knows what never finished, so this re-sends exactly that:

- a run still ``pending`` a while after it was created never had its first task: send it again;
- a ``running`` or ``cancelling`` run with no progress for a while, and no task of it on any live
  worker, has lost its messages: release its abandoned chunks and send the unfinished ones and the
  callback again;
- a webhook delivery due and not leased to a sender: send its ``deliverWebhook`` again.

Only with at least one live worker: without one nothing could run, and queued messages may still be
waiting in the broker.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from warehouse import ledger
from warehouse.db import transaction
from warehouse.models import Run, RunStatus

from .canvas import send_resume
from .webhooks import send_undelivered

logger = logging.getLogger(__name__)

RUN_TASKS = {"processWholeWarehouse", "processSomeProducts", "processFinished"}


@dataclass
class LiveWork:
    """What the workers answering right now hold: their names, and the runs their tasks belong to."""

    hostnames: set[str] = field(default_factory=set)
    run_ids: set[int] = field(default_factory=set)


def _run_id_of(request: Mapping[str, Any]) -> int | None:
    args = request.get("args") or []
    if request.get("name") not in RUN_TASKS or not args:
        return None
    # processFinished gets the chord's results first, then the run id.
    run_id = args[-1] if request["name"] == "processFinished" else args[0]
    return run_id if isinstance(run_id, int) else None


def live_work(app: Celery, timeout: float = 1.0) -> LiveWork:
    """Ask every worker (Celery's broadcast inspect) what it is running, holding and scheduling."""
    live = LiveWork(hostnames=set((app.control.inspect(timeout=timeout).ping() or {}).keys()))
    if not live.hostnames:
        return live
    inspect = app.control.inspect(timeout=timeout, limit=len(live.hostnames))
    for answer in (inspect.active(), inspect.reserved(), inspect.scheduled()):
        for requests in (answer or {}).values():
            for entry in requests:
                run_id = _run_id_of(entry.get("request", entry))  # scheduled entries wrap the request
                if run_id is not None:
                    live.run_ids.add(run_id)
    return live


@dataclass
class ReconcileReport:
    workers: int
    started: list[int] = field(default_factory=list)
    resumed: dict[int, int] = field(default_factory=dict)  # run id -> chunks re-sent
    webhook_deliveries_sent: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "started": self.started,
            "resumed": [{"run_id": run_id, "chunks_sent": sent} for run_id, sent in self.resumed.items()],
            "webhook_deliveries_sent": self.webhook_deliveries_sent,
        }


def _runs(session: Session, statuses: Iterable[str], column, before: dt.datetime) -> list[int]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(Run.id).where(Run.status.in_(statuses), column < before).order_by(Run.id)))


def reconcile(
    app: Celery, session_factory: sessionmaker[Session], settings: Mapping[str, Any], now: dt.datetime | None = None
) -> ReconcileReport:
    now = now or ledger.utcnow()
    pending_cutoff = now - dt.timedelta(seconds=float(settings.get("warehouse.reconcile_pending_after_seconds", 60)))
    stale_cutoff = now - dt.timedelta(seconds=float(settings.get("warehouse.reconcile_stale_after_seconds", 300)))

    live = live_work(app)
    report = ReconcileReport(workers=len(live.hostnames))
    if not live.hostnames:
        logger.warning("reconcile: no worker answers; nothing re-sent")
        return report

    with transaction(session_factory) as session:
        pending = _runs(session, [RunStatus.PENDING], Run.created_at, pending_cutoff)
        stale = _runs(session, [RunStatus.RUNNING, RunStatus.CANCELLING], Run.updated_at, stale_cutoff)

    for run_id in pending + stale:
        if run_id in live.run_ids:
            continue
        try:
            with transaction(session_factory) as session:
                plan = ledger.prepare_resume(session, run_id, claimed_before=stale_cutoff)
        except ledger.RunEnded:
            continue  # it ended between the query and now
        sent = send_resume(app, plan)
        if plan.restart:
            report.started.append(run_id)
        else:
            report.resumed[run_id] = sent
        logger.warning("reconcile: run %s %s", run_id, "restarted" if plan.restart else f"resumed with {sent} chunks")
    # Webhook deliveries due and not being sent (their message lost, say): each worker's chore sends
    # them too, but only where workers sweep; this sends them wherever beat runs.
    report.webhook_deliveries_sent = send_undelivered(app, session_factory)
    if report.webhook_deliveries_sent:
        logger.warning("reconcile: %s webhook deliveries sent again", report.webhook_deliveries_sent)
    return report

"""What a person does to a run, one code path for the API and the run pages: start, cancel, resume
and redrive it.

Each function makes its change in the request's transaction, sends what it sends only once that
has committed (``after_commit``: a worker must find what the message names), forgets the run's
cached status, and answers what it refuses with an ``ApiError`` (404, 409, 422) having changed
nothing. It returns the run and its warehouse's code; cancel, resume and redrive also return the
fields their answer adds to the run's JSON (``{"resumed": ...}``, ``{"redriven": ...}``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from pyramid.request import Request

from tasks.canvas import send_chunks, send_finish, send_resume, send_start
from tasks.webhooks import send_deliveries

from . import ledger, operations
from .dispatch import after_commit
from .errors import ApiError, FieldError
from .ledger.retention import retention_policy
from .lookups import run_or_404, warehouse_or_404
from .models import Run, RunStatus
from .presenters import isoformat
from .run_status import run_status_cache
from .webhooks.outbox import take_unsent


def start_run(
    request: Request,
    warehouse_code: str,
    operation: str,
    chunk_size: int | None = None,
    tolerated_failure_percent: Decimal | float | int = 0,
) -> tuple[Run, str]:
    """Record a pending run of ``operation`` and send its first task after commit."""
    warehouse = warehouse_or_404(request, warehouse_code)
    if operation not in operations.names():
        raise FieldError("operation", f"operation {operation!r} is not known (known: {', '.join(operations.names())})", 422)
    try:
        run = ledger.create_run(
            request.dbsession,
            warehouse,
            operation,
            chunk_size=chunk_size or operations.default_chunk_size(operation, request.registry.settings),
            tolerated_failure_percent=Decimal(str(tolerated_failure_percent)),
        )
    except ledger.ActiveRunExists as exists:
        raise ApiError(
            409, "run_active", str(exists), {"field": "operation", "active_run_id": exists.run_id}
        ) from None
    request.dbsession.flush()
    after_commit(request, lambda app: send_start(app, run.id), f"the start of run {run.id}")
    return run, warehouse.code


def cancel_run(request: Request, run_id: int) -> tuple[Run, str, dict[str, Any]]:
    """Ask the run to stop (durable: every chunk checks before it starts)."""
    run, code = run_or_404(request, run_id)
    try:
        run = ledger.cancel_run(request.dbsession, run.id)
    except ledger.RunEnded as ended:
        raise ApiError(409, "run_ended", str(ended), {"field": "id", "status": ended.status}) from None
    deliveries = take_unsent(request.dbsession)
    if deliveries:  # a pending run, cancelled at once: its end is told now
        after_commit(request, lambda app: send_deliveries(app, deliveries), f"the webhooks of run {run.id}")
    if run.status == RunStatus.CANCELLING:
        # Its callback skips every chunk that has not started and ends the run once the running
        # ones finish, without waiting for the queued chunk messages to drain.
        after_commit(request, lambda app: send_finish(app, run.id), f"the end of run {run.id}")
    run_status_cache(request).forget(run.id)
    return run, code, {}


def resume_run(request: Request, run_id: int) -> tuple[Run, str, dict[str, Any]]:
    """Send again what never finished of a pending or running run (or its first task)."""
    run, code = run_or_404(request, run_id)
    if run.status == RunStatus.CANCELLING:
        # A cancel is final: nothing of the run may start again, and it ends by itself (the workers'
        # sweep sends its end again if that was lost). The reconciler still resumes such a run's callback.
        raise ApiError(409, "run_cancelling", f"run {run.id} is being cancelled, and a cancel is final: it ends by itself",
                       {"field": "id", "status": run.status})
    stale_after = float(request.registry.settings.get("warehouse.reconcile_stale_after_seconds", 300))
    try:
        plan = ledger.prepare_resume(
            request.dbsession, run.id, claimed_before=ledger.utcnow() - dt.timedelta(seconds=stale_after)
        )
    except ledger.RunEnded as ended:
        raise ApiError(409, "run_ended", str(ended), {"field": "id", "status": ended.status}) from None
    after_commit(request, lambda app: send_resume(app, plan), f"resume of run {run.id}")
    run_status_cache(request).forget(run.id)
    return run, code, {"resumed": {"restarted": plan.restart, "chunks_sent": len(plan.chunks)}}


def redrive_run(request: Request, run_id: int) -> tuple[Run, str, dict[str, Any]]:
    """Do an ended run's failed chunks (and those a failed run skipped) again, in the same run."""
    run, code = run_or_404(request, run_id)
    try:
        plan = ledger.prepare_redrive(
            request.dbsession, run.id, kept_days=retention_policy(request.registry.settings).days
        )
    except ledger.RedriveRefused as refused:
        details: dict[str, Any] = {"field": "id", "status": refused.status}
        if isinstance(refused, ledger.AnotherRunActive):
            details["active_run_id"] = refused.active_run_id
        if isinstance(refused, ledger.DetailsPurged):
            details["details_purged_at"] = isoformat(refused.purged_at)
        raise ApiError(409, refused.reason, str(refused), details) from None
    after_commit(request, lambda app: send_chunks(app, plan.run_id, plan.chunks), f"the redrive of run {run.id}")
    run_status_cache(request).forget(run.id)
    return run, code, {"redriven": {"chunks_sent": len(plan.chunks)}}

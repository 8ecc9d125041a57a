"""The outbox: a run's change of status becomes an event and its deliveries, in the same transaction.

The ledger calls ``record_run_event`` right where it sets a run running or ended, so the event is
committed with the change or not at all: nothing is lost between the two, whatever dies when. The
deliveries are due at once; whoever committed the transaction sends them (``take_unsent``, then the
``deliverWebhook`` task), and if that message is lost the workers' chore sends them anyway.

This module imports no ledger code: the ledger imports it.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..models import DeliveryStatus, Run, RunStatus, Warehouse, WebhookDelivery, WebhookEvent, WebhookSubscription
from ..presenters import run_json

# A run's status -> the event type its subscribers hear of.
EVENT_TYPES: dict[str, str] = {
    RunStatus.RUNNING: "run.started",
    RunStatus.SUCCEEDED: "run.succeeded",
    RunStatus.PARTIALLY_FAILED: "run.partially_failed",
    RunStatus.FAILED: "run.failed",
    RunStatus.CANCELLED: "run.cancelled",
}
EVENT_NAMES: tuple[str, ...] = tuple(EVENT_TYPES.values())

# Where the ids of the deliveries a transaction wrote wait, on its session, to be sent after commit.
UNSENT_KEY = "webhook_deliveries_unsent"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def message_id() -> str:
    """A delivery's ``webhook-id``: the same on every attempt, so receivers can drop repeats."""
    return f"msg_{uuid.uuid4().hex}"


def record_run_event(session: Session, run_id: int, status: str) -> list[int]:
    """Write the event of run ``run_id`` reaching ``status`` and a delivery per subscription that
    wants it; the ids of the deliveries (also kept for ``take_unsent``).

    With no subscription that wants it, this costs one indexed query and writes nothing.
    """
    event_type = EVENT_TYPES.get(status)
    if event_type is None:
        return []
    warehouse_id = session.scalar(select(Run.warehouse_id).where(Run.id == run_id))
    candidates = session.execute(
        select(WebhookSubscription.id, WebhookSubscription.events).where(
            WebhookSubscription.enabled.is_(True),
            or_(WebhookSubscription.warehouse_id == warehouse_id, WebhookSubscription.warehouse_id.is_(None)),
        )
    ).all()
    wanting = [subscription_id for subscription_id, events in candidates if event_type in (events or [])]
    if not wanting:
        return []
    # The run as GET /api/runs/{id} answers it now: read again, since the ledger changed it with
    # statements the session's copy has not seen.
    run, code = session.execute(
        select(Run, Warehouse.code)
        .join(Warehouse, Warehouse.id == Run.warehouse_id)
        .where(Run.id == run_id)
        .execution_options(populate_existing=True)
    ).one()
    now = _utcnow()
    event = WebhookEvent(type=event_type, run_id=run_id, data=run_json(run, code), created_at=now)
    session.add(event)
    session.flush()
    deliveries = [
        WebhookDelivery(
            subscription_id=subscription_id, event_id=event.id, message_id=message_id(),
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, created_at=now,
        )
        for subscription_id in wanting
    ]
    session.add_all(deliveries)
    session.flush()
    ids = [delivery.id for delivery in deliveries]
    session.info.setdefault(UNSENT_KEY, []).extend(ids)
    return ids


def take_unsent(session: Session) -> list[int]:
    """The deliveries this session's transaction wrote, to send once it has committed; forgotten here."""
    return session.info.pop(UNSENT_KEY, [])

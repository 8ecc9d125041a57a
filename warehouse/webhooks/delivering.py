"""Claiming a due delivery, sending it, and recording the attempt and what comes next.

A claim is a lease: it moves the delivery's ``next_attempt_at`` past the time the attempt can take
(``config.lease_seconds``) and counts the attempt, in one transaction that commits before anything
is sent. No other process claims it while the lease holds; if its sender dies (kill -9, a node
lost), the lease runs out and whoever looks next (a worker's chore, the reconciler) claims it
again: at least once, never lost. The outcome is written only if the delivery still stands at the
attempt claimed, so a sender that comes back late never overwrites a newer attempt's outcome.

No transaction is open while the request is out: PostgreSQL ends idle transactions of workers
within seconds, and a receiver may take ten.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ..backoff import backoff_seconds
from ..db import transaction
from ..metrics import recording as metrics
from ..models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from ..presenters import isoformat
from . import config
from .addresses import AddressRefused, check_url
from .sending import Answer, envelope, post, signed_headers

logger = logging.getLogger(__name__)

GONE = 410


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def aware(moment: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; every one stored is UTC."""
    return moment.replace(tzinfo=dt.timezone.utc) if moment is not None and moment.tzinfo is None else moment


@dataclass(frozen=True)
class Claim:
    """One attempt at a delivery, and all it needs to be sent without the database."""

    delivery_id: int
    attempt: int
    url: str
    secret: str
    message_id: str
    body: str


def due(now: dt.datetime) -> Any:
    return (WebhookDelivery.status == DeliveryStatus.PENDING) & (WebhookDelivery.next_attempt_at <= now)


def _claim_rows(session: Session, delivery_ids: list[int], settings: Mapping[str, Any], now: dt.datetime) -> list[Claim]:
    """Lease the deliveries (already picked as due, under lock) and read what sending them needs."""
    if not delivery_ids:
        return []
    lease_until = now + dt.timedelta(seconds=config.lease_seconds(settings))
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(delivery_ids))
        .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=lease_until)
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(
        select(WebhookDelivery, WebhookSubscription.url, WebhookSubscription.secret, WebhookEvent)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id.in_(delivery_ids))
        .execution_options(populate_existing=True)
    ).all()
    claims = []
    for delivery, url, secret, event in rows:
        if delivery.give_up_at is None:  # its first attempt starts the clock of its retries
            delivery.give_up_at = aware(delivery.created_at) + dt.timedelta(hours=config.retry_hours(settings))
        body = envelope(event.type, isoformat(event.created_at) or "", event.data)
        claims.append(Claim(delivery.id, delivery.attempts, url, secret, delivery.message_id, body))
    return claims


def claim_one(session: Session, delivery_id: int, settings: Mapping[str, Any], now: dt.datetime | None = None) -> Claim | None:
    """Lease delivery ``delivery_id`` if it is due; None if it is not (sent, leased, waiting, gone)."""
    now = now or utcnow()
    picked = session.scalar(
        select(WebhookDelivery.id).where(WebhookDelivery.id == delivery_id, due(now)).with_for_update(skip_locked=True)
    )
    claims = _claim_rows(session, [picked] if picked is not None else [], settings, now)
    return claims[0] if claims else None


def claim_due(session: Session, settings: Mapping[str, Any], limit: int, now: dt.datetime | None = None) -> list[Claim]:
    """Lease up to ``limit`` due deliveries, the longest waiting first; rows another process is
    claiming right now are skipped (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's transactions
    take the write lock at BEGIN, so there they simply queue)."""
    now = now or utcnow()
    picked = list(
        session.scalars(
            select(WebhookDelivery.id).where(due(now)).order_by(WebhookDelivery.next_attempt_at)
            .limit(limit).with_for_update(skip_locked=True)
        )
    )
    return _claim_rows(session, picked, settings, now)


def due_ids(session: Session, limit: int, now: dt.datetime | None = None) -> list[int]:
    """Due deliveries, without claiming them: what the reconciler sends tasks for."""
    now = now or utcnow()
    return list(session.scalars(select(WebhookDelivery.id).where(due(now)).order_by(WebhookDelivery.next_attempt_at).limit(limit)))


def attempt(claim: Claim, settings: Mapping[str, Any]) -> Answer:
    """Send the claimed attempt: the URL checked again now, then one signed POST to that address."""
    try:
        target = check_url(claim.url, allow_private=config.allow_private_addresses(settings))
    except AddressRefused as refused:
        answer = Answer(None, f"refused: {refused}", 0)
    else:
        answer = post(target, claim.body, signed_headers(claim.secret, claim.message_id, claim.body), config.timeout_seconds(settings))
    metrics.webhook_attempted(_outcome(answer))
    return answer


def _outcome(answer: Answer) -> str:
    """The attempt's outcome for the metrics (warehouse.metrics.specs.WEBHOOK_OUTCOMES)."""
    if answer.delivered:
        return "delivered"
    if answer.status_code is None:
        return "no_answer"
    return "gone" if answer.status_code == GONE else "rejected"


def record(session: Session, claim: Claim, answer: Answer, settings: Mapping[str, Any], now: dt.datetime | None = None) -> str | None:
    """Write the attempt and the delivery's next state; the state, or None if the delivery is gone or
    a newer attempt has taken it over (the attempt is still recorded, if the delivery exists)."""
    now = now or utcnow()
    delivery = session.get(WebhookDelivery, claim.delivery_id, with_for_update=True, populate_existing=True)
    if delivery is None:  # its subscription was deleted meanwhile
        return None
    session.add(WebhookAttempt(
        delivery_id=delivery.id, attempted_at=now - dt.timedelta(milliseconds=answer.duration_ms),
        status_code=answer.status_code, error=answer.error, duration_ms=answer.duration_ms,
    ))
    if delivery.attempts != claim.attempt or delivery.status != DeliveryStatus.PENDING:
        return None
    delivery.last_status_code, delivery.last_error = answer.status_code, answer.error
    if answer.delivered:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.DELIVERED, now, None
    elif answer.status_code == GONE:
        disable_subscription(session, delivery.subscription_id, f"the receiver answered 410 Gone at {now.isoformat()}", now)
    else:
        give_up_at = aware(delivery.give_up_at) or now
        wait = backoff_seconds(claim.attempt - 1, config.backoff_seconds(settings), config.backoff_max_seconds(settings))
        if now >= give_up_at:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            delivery.next_attempt_at = min(now + dt.timedelta(seconds=wait), give_up_at)
    session.flush()
    return delivery.status


def disable_subscription(session: Session, subscription_id: int, reason: str, now: dt.datetime) -> None:
    """The receiver wants no more: the subscription is disabled and its pending deliveries fail."""
    subscription = session.get_one(WebhookSubscription, subscription_id)
    subscription.enabled, subscription.disabled_reason, subscription.disabled_at = False, reason, now
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.FAILED, next_attempt_at=None, last_error=f"the subscription was disabled: {reason}")
        .execution_options(synchronize_session="fetch")
    )


def send_claim(session_factory: sessionmaker[Session], claim: Claim, settings: Mapping[str, Any]) -> str | None:
    """Send a claimed attempt and record it; the delivery's state after it."""
    answer = attempt(claim, settings)
    with transaction(session_factory) as session:
        state = record(session, claim, answer, settings)
    logger.info("webhook delivery %s attempt %s: %s -> %s", claim.delivery_id, claim.attempt,
                answer.status_code or answer.error, state)
    return state


def deliver(session_factory: sessionmaker[Session], delivery_id: int, settings: Mapping[str, Any]) -> str | None:
    """Claim delivery ``delivery_id`` if it is due, send it and record the attempt."""
    with transaction(session_factory) as session:
        claim = claim_one(session, delivery_id, settings)
    if claim is None:
        return None
    return send_claim(session_factory, claim, settings)

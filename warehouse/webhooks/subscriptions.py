"""Subscribing, listing, deleting, the delivery log and a retry: one code path for the API and
``warehouse-webhooks``.

Each function checks all it was given before it writes anything, and refuses in words with an
``ApiError`` naming the field, so a refusal leaves the database as it was.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..errors import ApiError, FieldError
from ..models import DeliveryStatus, Warehouse, WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from ..presenters import isoformat
from . import config
from .addresses import AddressRefused, Resolver, UrlMalformed, check_url
from .delivering import aware, utcnow
from .outbox import EVENT_NAMES

SECRET_BYTES = 24  # Standard Webhooks asks for 24 to 64 random bytes


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def checked_events(events: Sequence[Any]) -> list[str]:
    if not isinstance(events, (list, tuple)) or not events:
        raise FieldError("events", f"events needs at least one event type (known: {', '.join(EVENT_NAMES)})")
    unknown = [str(event) for event in events if event not in EVENT_NAMES]
    if unknown:
        raise FieldError(
            "events", f"events holds types this service does not send: {', '.join(map(repr, unknown[:5]))} "
            f"(known: {', '.join(EVENT_NAMES)})", 422,
        )
    return list(dict.fromkeys(events))


def create_subscription(
    session: Session, fields: Mapping[str, Any], settings: Mapping[str, Any], resolve: Resolver | None = None
) -> tuple[WebhookSubscription, str | None]:
    """A new subscription (``fields``: url, events, and optionally warehouse, a code) and its
    warehouse's code. Its secret is on it; answer it now, since it is never shown again."""
    events = checked_events(fields.get("events") or [])
    try:
        check_url(str(fields.get("url", "")), allow_private=config.allow_private_addresses(settings), resolve=resolve)
    except UrlMalformed as malformed:
        raise FieldError("url", str(malformed)) from None
    except AddressRefused as refused:
        raise FieldError("url", str(refused), 422, code="url_refused") from None
    code = fields.get("warehouse")
    warehouse_id = None
    if code is not None:
        warehouse_id = session.scalar(select(Warehouse.id).where(Warehouse.code == code))
        if warehouse_id is None:
            raise ApiError(404, "warehouse_not_found", f"no warehouse with code {code!r}", {"field": "warehouse"})
    subscription = WebhookSubscription(
        url=fields["url"], events=events, warehouse_id=warehouse_id, secret=new_secret(), enabled=True,
        created_at=utcnow(),
    )
    session.add(subscription)
    session.flush()
    return subscription, code


def subscription_json(subscription: WebhookSubscription, code: str | None, with_secret: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": subscription.id,
        "url": subscription.url,
        "events": list(subscription.events or []),
        "warehouse": code,
        "enabled": subscription.enabled,
        "disabled_reason": subscription.disabled_reason,
        "disabled_at": isoformat(subscription.disabled_at),
        "created_at": isoformat(subscription.created_at),
        "links": {"deliveries": f"/api/webhooks/{subscription.id}/deliveries"},
    }
    if with_secret:
        shown["secret"] = subscription.secret
    return shown


def list_subscriptions(session: Session) -> list[tuple[WebhookSubscription, str | None]]:
    rows = session.execute(
        select(WebhookSubscription, Warehouse.code)
        .outerjoin(Warehouse, Warehouse.id == WebhookSubscription.warehouse_id)
        .order_by(WebhookSubscription.id)
    ).all()
    return [(subscription, code) for subscription, code in rows]


def subscription_or_404(session: Session, subscription_id: int) -> WebhookSubscription:
    subscription = session.get(WebhookSubscription, subscription_id)
    if subscription is None:
        raise ApiError(404, "webhook_not_found", f"no webhook subscription with id {subscription_id}", {"field": "id"})
    return subscription


def delete_subscription(session: Session, subscription_id: int) -> None:
    """Delete the subscription with its deliveries and their attempts: nothing more is sent to it
    (a send in flight finds its delivery gone and records nothing). Its events stay."""
    subscription = subscription_or_404(session, subscription_id)
    deliveries = select(WebhookDelivery.id).where(WebhookDelivery.subscription_id == subscription.id)
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id))
    session.delete(subscription)
    session.flush()


def deliveries_page(
    session: Session, subscription_id: int, limit: int, before: int | None
) -> tuple[list[tuple[WebhookDelivery, WebhookEvent, list[WebhookAttempt]]], bool]:
    """A page of the subscription's deliveries, newest first, each with its event and attempts (oldest
    first); and whether there are more."""
    statement = (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.subscription_id == subscription_id)
    )
    if before is not None:
        statement = statement.where(WebhookDelivery.id < before)
    rows = session.execute(statement.order_by(WebhookDelivery.id.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    attempts: dict[int, list[WebhookAttempt]] = {delivery.id: [] for delivery, _ in page}
    if attempts:
        for each in session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(attempts))).order_by(WebhookAttempt.id)
        ):
            attempts[each.delivery_id].append(each)
    return [(delivery, event, attempts[delivery.id]) for delivery, event in page], len(rows) > limit


def delivery_with_log(session: Session, delivery: WebhookDelivery) -> tuple[WebhookDelivery, WebhookEvent, list[WebhookAttempt]]:
    """One delivery as ``deliveries_page`` gives each: with its event and its attempts."""
    event = session.get_one(WebhookEvent, delivery.event_id)
    attempts = list(session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery.id).order_by(WebhookAttempt.id)
    ))
    return delivery, event, attempts


def delivery_json(delivery: WebhookDelivery, event: WebhookEvent, attempts: Sequence[WebhookAttempt]) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_type": event.type,
        "run_id": event.run_id,
        "message_id": delivery.message_id,
        "status": delivery.status,
        "attempt_count": delivery.attempts,
        "attempts": [
            {
                "attempted_at": isoformat(each.attempted_at),
                "status_code": each.status_code,
                "error": each.error,
                "duration_ms": each.duration_ms,
            }
            for each in attempts
        ],
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "next_attempt_at": isoformat(delivery.next_attempt_at),
        "give_up_at": isoformat(delivery.give_up_at),
        "delivered_at": isoformat(delivery.delivered_at),
        "created_at": isoformat(delivery.created_at),
    }


def retry_delivery(session: Session, subscription_id: int, delivery_id: int, now: dt.datetime | None = None) -> WebhookDelivery:
    """Make the delivery due now, whatever its state, with its webhook-id: the caller sends it after
    commit. Past its time for retries it gets this one attempt; within it, the usual retries too."""
    subscription = subscription_or_404(session, subscription_id)
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.subscription_id != subscription.id:
        raise ApiError(404, "delivery_not_found", f"webhook {subscription_id} has no delivery with id {delivery_id}",
                       {"field": "delivery_id"})
    if not subscription.enabled:
        raise ApiError(409, "webhook_disabled", f"webhook {subscription_id} is disabled ({subscription.disabled_reason}): "
                       "subscribe again to receive deliveries", {"field": "id"})
    now = now or utcnow()
    delivery.status, delivery.next_attempt_at = DeliveryStatus.PENDING, now
    delivery.give_up_at = max(aware(delivery.give_up_at) or now, now)
    session.flush()
    return delivery

"""Webhooks: who wants to hear of runs, and the outbox of what they are to be told.

A run's status change writes a ``WebhookEvent`` and one ``WebhookDelivery`` per matching subscription
in the same transaction (the outbox), so no event is lost between the change and its sending; the
deliveries are then sent, and sent again, until they succeed or give up.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from .inventory import BigIntKey
from .meta import Base


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # to be sent (again) at next_attempt_at
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # gave up: out of time, or the subscription was disabled or deleted


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"
    # What every run's change of status asks (warehouse/webhooks/outbox.py): the enabled
    # subscriptions of its warehouse, or of every warehouse.
    __table_args__ = (
        Index(
            "ix_webhook_subscriptions_enabled_warehouse_id",
            "warehouse_id",
            postgresql_where=text("enabled"),
            sqlite_where=text("enabled"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    # The event types it wants (a list of "run.succeeded", ...).
    events: Mapped[list[str]] = mapped_column(JSON)
    # None: every warehouse's runs.
    warehouse_id: Mapped[int | None] = mapped_column(ForeignKey("warehouses.id", ondelete="CASCADE"))
    # The Standard Webhooks signing secret ("whsec_" + base64), shown once when subscribing.
    secret: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # Why it was disabled (a 410 Gone from the receiver, say), when it was.
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookEvent(Base):
    """One thing that happened to a run, with the run's JSON as it was then."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_run_id", "run_id"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One event to one subscription: the same ``message_id`` (the ``webhook-id`` header) on every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_subscription_id_id", "subscription_id", "id"),
        # What the sender asks every few seconds: the deliveries due now.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Until when it is tried again: set at its first attempt to its time plus
    # warehouse.webhook_retry_hours (the ledger, which writes the row, does not read settings).
    give_up_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class WebhookAttempt(Base):
    """One try at a delivery: when, what came back, how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id", "delivery_id"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)

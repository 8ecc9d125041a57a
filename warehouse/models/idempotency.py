"""Answers kept for repeated POSTs: the same ``Idempotency-Key`` gets the first answer again."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .inventory import BigIntKey
from .meta import Base


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    # Old keys are purged by age.
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    # SHA-256 of method, path and body: the same key with another request is refused, not replayed.
    request_hash: Mapped[str] = mapped_column(String(64))
    # NULL until the first request's answer is recorded (in the same transaction as its effects).
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[Any] = mapped_column(JSON, nullable=True)
    location: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)

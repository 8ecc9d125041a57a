"""Models, and the wiring of sessions into Pyramid requests (pyramid_tm + zope.sqlalchemy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from ..db import make_engine, make_session_factory
from .idempotency import IdempotencyKey
from .inventory import Product, Shipment, Warehouse
from .meta import Base
from .runs import (
    ACTIVE_RUN_STATUSES,
    UNFINISHED_CHUNK_STATUSES,
    ChunkStatus,
    Run,
    RunChunk,
    RunItemFailure,
    RunStatus,
)
from .schedules import Schedule, ScheduleTick, TickOutcome
from .webhooks import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from .workers import WorkerProcess

if TYPE_CHECKING:
    from pyramid.config import Configurator

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "UNFINISHED_CHUNK_STATUSES",
    "Base",
    "ChunkStatus",
    "DeliveryStatus",
    "IdempotencyKey",
    "Product",
    "Run",
    "RunChunk",
    "RunItemFailure",
    "RunStatus",
    "Schedule",
    "ScheduleTick",
    "Shipment",
    "TickOutcome",
    "Warehouse",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookSubscription",
    "WorkerProcess",
    "get_tm_session",
]


def get_tm_session(session_factory: sessionmaker[Session], transaction_manager, request=None) -> Session:  # type: ignore[no-untyped-def]
    """A session joined to ``transaction_manager``: committed or aborted with the request."""
    # Only the web app joins sessions to a transaction manager: commands and workers that import the
    # models do not pay for importing it.
    import zope.sqlalchemy

    dbsession = session_factory(info={"request": request})
    zope.sqlalchemy.register(dbsession, transaction_manager=transaction_manager)
    return dbsession


def includeme(config: Configurator) -> None:
    settings = config.get_settings()
    settings["tm.manager_hook"] = "pyramid_tm.explicit_manager"
    config.include("pyramid_tm")
    config.include("pyramid_retry")

    # Tests hand in a session factory bound to their own connection.
    session_factory = settings.get("dbsession_factory") or make_session_factory(make_engine(settings))
    config.registry["dbsession_factory"] = session_factory

    def dbsession(request):  # type: ignore[no-untyped-def]
        return get_tm_session(session_factory, request.tm, request=request)

    config.add_request_method(dbsession, reify=True)

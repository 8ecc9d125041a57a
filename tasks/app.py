"""Build the Celery app from the same settings as the web app."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from warehouse import operations
from warehouse.db import make_engine, make_session_factory

# Delivery settings; each is explained in the README's "Delivery settings" section.
CELERY_DEFAULTS: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "enable_utc": True,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "result_expires": 7 * 24 * 3600,
    "broker_transport_options": {"visibility_timeout": 4 * 3600},
    "broker_connection_retry_on_startup": True,
    # With the broker down, give up publishing within about two seconds: the API answers 202 anyway
    # and the reconciler sends what was not sent (the ledger has it).
    "broker_connection_timeout": 2,
    "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
    # `celery -A tasks beat` sends the reconciler every minute.
    "beat_schedule": {"reconcile-runs": {"task": "reconcileRuns", "schedule": 60.0}},
}


def _parse(value: Any) -> Any:
    """Ini values are strings; JSON-looking ones (numbers, booleans, objects, lists) become values."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def celery_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    config = dict(CELERY_DEFAULTS)
    for key, value in settings.items():
        if key.startswith("celery.") and key != "celery.embedded_worker" and not key.startswith("celery.embedded_"):
            config[key.removeprefix("celery.")] = _parse(value)
    return config


class WorkerContext:
    """What tasks need from the warehouse app: settings and a database engine of their own.

    The engine is made on first use, so each forked pool child makes its own; ``worker_process_init``
    also drops any connection a child inherited, which must never be shared across a fork.
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self._engine: Engine | None = None
        self._session_factory: sessionmaker[Session] | None = None
        self._lock = threading.Lock()

    @property
    def session_factory(self) -> sessionmaker[Session]:
        with self._lock:
            if self._session_factory is None:
                self._engine = make_engine(self.settings)
                self._session_factory = make_session_factory(self._engine)
            return self._session_factory

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A fresh session and transaction for one task invocation, closed when it ends."""
        with self.session_factory() as session, session.begin():
            yield session

    def forget_inherited_connections(self) -> None:
        if self._engine is not None:
            self._engine.dispose(close=False)


_contexts: weakref.WeakSet[WorkerContext] = weakref.WeakSet()


@worker_process_init.connect
def _after_fork(**_kwargs: Any) -> None:
    for context in list(_contexts):
        context.forget_inherited_connections()


def make_celery(settings: Mapping[str, Any]) -> Celery:
    from . import runs

    operations.register_from_settings(settings)
    app = Celery("warehouse", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.warehouse = context = WorkerContext(settings)  # type: ignore[attr-defined]
    _contexts.add(context)
    runs.register(app)
    return app

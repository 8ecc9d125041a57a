"""This process in the ledger's ``workers`` table: registered when it starts, heartbeating while it
lives, marked stopped when it ends cleanly, and sweeping for the chunks of those that did not.

A prefork worker's pool children each have one (they are what runs chunks; ``worker_process_init``
starts it after the fork); a worker on the solo or thread pool, and the embedded worker, has one for
the process. The heartbeat is a daemon thread: a frozen or killed process stops heartbeating with
everything else it does, which is the point.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown
from pyramid.settings import asbool

from warehouse.db import transaction
from warehouse.ledger import workers as fleet

from .chores import do_chores
from .sweep import sweep

logger = logging.getLogger(__name__)


class Presence:
    def __init__(self, app: Celery, node: str, pool_child: bool = False) -> None:
        self.app = app
        self.node = node
        self.context = app.warehouse  # type: ignore[attr-defined]
        self.interval = fleet.heartbeat_seconds(self.context.settings)
        self.worker_id: int | None = None
        self.chunks_done = 0
        self.chunks_failed = 0
        self._parent = os.getppid() if pool_child else None
        self._sweeps = asbool(self.context.settings.get("warehouse.worker_sweep", True))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Register now if the database answers (so the first chunks already name this process),
        then heartbeat and sweep in the background."""
        try:
            self._register()
        except Exception as error:  # noqa: BLE001 - the database away at start: the thread retries
            logger.warning("worker %s: cannot register yet (%s); retrying", self.node, error)
        self._thread = threading.Thread(target=self._run, name="warehouse-heartbeat", daemon=True)
        self._thread.start()

    def count(self, outcome: str) -> None:
        with self._lock:
            if outcome == "done":
                self.chunks_done += 1
            elif outcome == "failed":
                self.chunks_failed += 1

    def stop(self) -> None:
        """A clean end: say so, so that a sweep sends what this process still held at once."""
        self._stopping.set()
        if self.worker_id is None:
            return
        try:
            with transaction(self.context.session_factory) as session:
                fleet.heartbeat(session, self.worker_id, self.chunks_done, self.chunks_failed, stopping=True)
        except Exception as error:  # noqa: BLE001 - it will be declared dead instead, a few seconds later
            logger.warning("worker %s: could not record its stop (%s)", self.node, error)

    def _register(self) -> None:
        with transaction(self.context.session_factory) as session:
            self.worker_id = fleet.register_worker(session, self.node, socket.gethostname(), os.getpid())
        logger.info("worker %s pid %s is worker %s in the ledger", self.node, os.getpid(), self.worker_id)

    def _orphaned(self) -> bool:
        # A pool child whose main process died can take no new work and acknowledge nothing: let it
        # fall silent, so that what it holds is sent elsewhere.
        return self._parent not in (None, 1) and os.getppid() != self._parent

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            if self._orphaned():
                logger.warning("worker %s pid %s: its main process is gone; no more heartbeats", self.node, os.getpid())
                return
            try:
                if self.worker_id is None:
                    self._register()
                else:
                    with transaction(self.context.session_factory) as session:
                        known = fleet.heartbeat(session, self.worker_id, self.chunks_done, self.chunks_failed)
                    if not known:
                        self._register()
                if self._sweeps:
                    sweep(self.app, self.context.session_factory, self.context.settings)
                    do_chores(self.app, self.context.session_factory, self.context.settings)
            except Exception as error:  # noqa: BLE001 - database or broker away: try again next beat
                logger.warning("worker %s: heartbeat or sweep failed: %s", self.node, error)


def current_presence(app: Celery) -> Presence | None:
    return getattr(app.warehouse, "presence", None)  # type: ignore[attr-defined]


def start_presence(app: Celery, node: str, pool_child: bool = False) -> Presence:
    presence = Presence(app, node, pool_child)
    app.warehouse.presence = presence  # type: ignore[attr-defined]
    presence.start()
    return presence


def stop_presence(app: Celery) -> None:
    presence = current_presence(app)
    if presence is not None:
        presence.stop()


def _worker_app() -> Celery | None:
    """The warehouse app this worker runs (the current one in a worker process), if any."""
    from celery import current_app

    app = current_app._get_current_object()
    return app if hasattr(app, "warehouse") else None


@worker_process_init.connect
def _pool_child_started(sender: Any = None, **_kwargs: Any) -> None:
    app = _worker_app()
    if app is not None:
        start_presence(app, str(sender), pool_child=True)


@worker_process_shutdown.connect
def _pool_child_ending(**_kwargs: Any) -> None:
    app = _worker_app()
    if app is not None:
        stop_presence(app)


def _runs_tasks_itself(consumer: Any) -> bool:
    """True for the solo and thread pools: the worker's own process runs the tasks."""
    from celery.concurrency.prefork import TaskPool as PreforkPool

    return not isinstance(consumer.pool, PreforkPool)


@worker_ready.connect
def _worker_ready(sender: Any = None, **_kwargs: Any) -> None:
    app = getattr(sender, "app", None)
    if app is not None and hasattr(app, "warehouse") and _runs_tasks_itself(sender) and current_presence(app) is None:
        start_presence(app, sender.hostname)


@worker_shutdown.connect
def _worker_ending(sender: Any = None, **_kwargs: Any) -> None:
    app = getattr(sender, "app", None)
    if app is not None and hasattr(app, "warehouse"):
        stop_presence(app)

"""A Celery worker inside the current process, for the embedded default (development.ini).

With the in-memory broker (``memory://``) the broker lives in this process, so the worker must too:
Celery's own WorkController, on a thread pool, in a daemon thread. Production runs
``celery -A tasks worker`` processes instead; the tasks and the chord are the same.
"""

from __future__ import annotations

import logging
import socket
import threading

from celery import Celery
from celery.worker import WorkController

from .presence import start_presence, stop_presence

logger = logging.getLogger(__name__)


def start_embedded_worker(app: Celery, concurrency: int = 4, hostname: str | None = None) -> WorkController:
    """Start a thread-pool worker for ``app`` in a daemon thread and wait until it consumes."""
    ready = threading.Event()
    # The thread pool's tracer looks tasks up on the default app, not on the worker's: make it ours.
    app.set_default()
    worker = app.WorkController(
        pool_cls="threads",
        concurrency=concurrency,
        hostname=hostname or f"embedded@{socket.gethostname()}",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel=logging.INFO,
        ready_callback=lambda *_consumer: ready.set(),
    )
    thread = threading.Thread(target=worker.start, name="celery-embedded-worker", daemon=True)
    thread.start()
    if not ready.wait(timeout=30):
        raise RuntimeError("the embedded Celery worker did not start within 30 seconds")
    logger.info("embedded Celery worker started with %s threads", concurrency)
    start_presence(app, worker.hostname)
    return worker


def stop_embedded_worker(worker: WorkController) -> None:
    stop_presence(worker.app)
    worker.stop(in_sighandler=False)

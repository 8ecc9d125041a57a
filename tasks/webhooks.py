"""Webhook deliveries from the workers: ``deliverWebhook`` sends one as soon as its event commits,
and a chore on every worker process's heartbeat sends whatever is due and not being sent (a retry's
time has come, the task's message was lost with Redis, its worker was killed mid-request).

The chore claims in the database (``warehouse.webhooks.delivering``) and hands the requests to a few
threads of this process, so a slow receiver never holds up the heartbeat, which must keep saying
that the process lives.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery, Task
from sqlalchemy.orm import Session, sessionmaker

from warehouse.db import transaction
from warehouse.webhooks import delivering

from .chores import chore

logger = logging.getLogger(__name__)

SENDER_THREADS = 4  # requests in flight at once per process, from the chore


def send_deliveries(app: Celery, delivery_ids: Iterable[int]) -> None:
    """Send ``deliverWebhook`` for each delivery (after its transaction committed). One that cannot
    be sent is not lost: the chore sends it within a heartbeat or two."""
    for delivery_id in delivery_ids:
        try:
            app.send_task("deliverWebhook", args=[delivery_id], ignore_result=True)
        except Exception as error:  # noqa: BLE001 - broker away: the delivery waits in the ledger
            logger.warning("webhook delivery %s not sent yet (%s); the workers' chore will send it", delivery_id, error)


def deliver_webhook(self: Task, delivery_id: int) -> str | None:
    context = self.app.warehouse  # type: ignore[attr-defined]
    return delivering.deliver(context.session_factory, delivery_id, context.settings)


class Senders:
    """This process's sender threads, made after a fork (a pool child's own), with the number free."""

    def __init__(self) -> None:
        self._pid = -1
        self._executor: ThreadPoolExecutor | None = None
        self._busy = 0
        self._lock = threading.Lock()

    def free(self) -> int:
        with self._lock:
            return SENDER_THREADS - self._busy if self._pid == os.getpid() else SENDER_THREADS

    def submit(self, job: Any, *args: Any) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a fork does not copy threads: start this process's own
                self._pid, self._busy = os.getpid(), 0
                self._executor = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="webhook-sender")
            self._busy += 1
            assert self._executor is not None
            self._executor.submit(self._run, job, *args)

    def _run(self, job: Any, *args: Any) -> None:
        try:
            job(*args)
        except Exception:  # noqa: BLE001 - the lease runs out and the delivery is tried again
            logger.exception("webhook sender failed")
        finally:
            with self._lock:
                self._busy -= 1


senders = Senders()


@chore
def send_due_webhooks(app: Celery, session_factory: sessionmaker[Session], settings: Mapping[str, Any]) -> int:
    """Claim as many due deliveries as this process has free sender threads, and send them."""
    free = senders.free()
    if free <= 0:
        return 0
    with transaction(session_factory) as session:
        claims = delivering.claim_due(session, settings, limit=free)
    for claim in claims:
        senders.submit(delivering.send_claim, session_factory, claim, settings)
    return len(claims)


def send_undelivered(app: Celery, session_factory: sessionmaker[Session], limit: int = 1000) -> int:
    """The reconciler's share: a ``deliverWebhook`` for every delivery due and not being sent."""
    with transaction(session_factory) as session:
        ids = delivering.due_ids(session, limit)
    send_deliveries(app, ids)
    return len(ids)


def register(app: Celery) -> None:
    """Register ``deliverWebhook`` (acks_late: a worker killed mid-request gives the message back)."""
    app.task(name="deliverWebhook", bind=True, acks_late=True, ignore_result=True)(deliver_webhook)

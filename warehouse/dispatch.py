"""Sending tasks from the web side: only after the request's transaction has committed.

A worker that receives ``processWholeWarehouse(run_id)`` must find the run row, so the message goes
out from an after-commit hook. If the broker is down at that moment the run stays ``pending`` in
the ledger and the reconciler starts it later; the API still answers 202.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.settings import asbool

logger = logging.getLogger(__name__)


def after_commit(request: Request, send: Callable[[Celery], Any], what: str) -> None:
    """Call ``send(celery_app)`` once the request's transaction has committed (never if it aborts)."""
    celery_app: Celery = request.registry["celery_app"]

    def hook(committed: bool) -> None:
        if not committed:
            return
        try:
            send(celery_app)
        except Exception:
            logger.exception("could not send %s; the reconciler will pick it up", what)

    request.tm.get().addAfterCommitHook(hook)



def includeme(config: Configurator) -> None:
    from tasks.app import make_celery

    settings = config.get_settings()
    celery_app = settings.get("celery_app") or make_celery(settings)
    config.registry["celery_app"] = celery_app
    if asbool(settings.get("celery.embedded_worker", False)):
        from tasks.embedded import start_embedded_worker

        concurrency = int(settings.get("celery.embedded_concurrency", 4))
        config.registry["embedded_worker"] = start_embedded_worker(celery_app, concurrency=concurrency)

"""Small jobs every live worker process does on each heartbeat, after its sweep: firing the schedules
that are due, sending the webhook deliveries that are due.

On the heartbeat rather than only from beat, so that the embedded default (one process, no beat)
does them too, and a deployment keeps doing them with beat down. Each chore decides in the database
what is its to do (a row lock, a unique key), so any number of processes may try at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

Chore = Callable[[Celery, sessionmaker[Session], Mapping[str, Any]], Any]

CHORES: list[Chore] = []


def chore(function: Chore) -> Chore:
    """Register ``function(app, session_factory, settings)`` as a chore."""
    CHORES.append(function)
    return function


def do_chores(app: Celery, session_factory: sessionmaker[Session], settings: Mapping[str, Any]) -> None:
    for job in CHORES:
        try:
            job(app, session_factory, settings)
        except Exception as error:  # noqa: BLE001 - one chore failing must not stop the others, nor the heartbeat
            logger.warning("chore %s failed: %s", job.__name__, error)

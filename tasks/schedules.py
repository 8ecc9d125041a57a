"""Schedules fired from the workers: a chore on every worker process's heartbeat (so the embedded
default, with no beat, fires them), and ``fireSchedules``, which beat sends every few seconds (so a
deployment with beat fires on time however its workers' heartbeats fall).

Both call the same ``warehouse.schedules.fire_due_schedules``, which decides in the database which
process fires which tick: however many of them try at once, a tick starts at most one run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from celery import Celery, Task
from sqlalchemy.orm import Session, sessionmaker

from warehouse import operations
from warehouse.ledger import utcnow
from warehouse.schedules import Firing, fire_due_schedules

from .canvas import send_start
from .chores import chore

logger = logging.getLogger(__name__)

DEFAULT_FIRE_SECONDS = 10.0


def fire_seconds(settings: Mapping[str, Any]) -> float:
    """How often beat sends ``fireSchedules`` (``warehouse.schedule_fire_seconds``)."""
    return float(settings.get("warehouse.schedule_fire_seconds", DEFAULT_FIRE_SECONDS))


@chore
def fire_schedules(app: Celery, session_factory: sessionmaker[Session], settings: Mapping[str, Any]) -> list[Firing]:
    """Fire the due schedules, then send each started run's first task (its row has committed)."""
    firings = fire_due_schedules(
        session_factory, utcnow(), chunk_size_for=lambda operation: operations.default_chunk_size(operation, settings)
    )
    for firing in firings:
        logger.info("schedule %s, tick %s: %s run %s", firing.schedule_id, firing.tick_at.isoformat(), firing.outcome,
                    firing.run_id or firing.active_run_id)
        if firing.run_id is None:
            continue
        try:
            send_start(app, firing.run_id)
        except Exception as error:  # noqa: BLE001 - the run waits pending in the ledger; the sweep sends it
            logger.warning("run %s of schedule %s could not be sent yet: %s", firing.run_id, firing.schedule_id, error)
    return firings


def fire_schedules_task(self: Task) -> list[dict[str, Any]]:
    context = self.app.warehouse  # type: ignore[attr-defined]
    firings = fire_schedules(self.app, context.session_factory, context.settings)
    return [{**asdict(firing), "tick_at": firing.tick_at.isoformat()} for firing in firings]


def register(app: Celery) -> None:
    """Register ``fireSchedules``, which beat sends every ``fire_seconds``."""
    # Not acks_late, and its result ignored: a round lost with its worker is simply the next one's to do.
    app.task(name="fireSchedules", bind=True, ignore_result=True)(fire_schedules_task)
    every = fire_seconds(app.warehouse.settings)  # type: ignore[attr-defined]
    beat = dict(app.conf.beat_schedule)  # a copy: the defaults' dict is shared by every app
    beat["fire-schedules"] = {**beat.get("fire-schedules", {"task": "fireSchedules"}), "schedule": every}
    app.conf.beat_schedule = beat

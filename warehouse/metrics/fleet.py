"""The fleet's figures, read from the ledger and the broker when Prometheus scrapes the web app.

They are the same whichever web process answers, so they are read at scrape time rather than
counted: runs by status, worker processes alive, and each queue's depth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from celery import Celery
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tasks.queues import queue_depths

from ..ledger.workers import count_alive_workers
from ..models import Run, RunStatus
from .specs import BY_NAME

logger = logging.getLogger(__name__)


def _gauge(name: str) -> GaugeMetricFamily:
    spec = BY_NAME[name]
    return GaugeMetricFamily(name, spec.help, labels=spec.labels or None)


class FleetFigures(Collector):
    """One scrape's fleet figures: the ledger's read in the request's session, the broker's asked
    for then (left out, with a warning in the log, if the broker does not answer)."""

    def __init__(self, session: Session, celery_app: Celery, settings: Mapping[str, Any]) -> None:
        self.session, self.celery_app, self.settings = session, celery_app, settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = dict(self.session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
        runs = _gauge("warehouse_runs")
        for status in RunStatus:
            runs.add_metric([status.value], counts.get(status, 0))
        yield runs
        alive = _gauge("warehouse_workers_alive")
        alive.add_metric([], count_alive_workers(self.session, self.settings))
        yield alive
        yield from self._queues()

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        try:
            depths = queue_depths(self.celery_app)
        except Exception as error:  # noqa: BLE001 - the broker away: the other figures still count
            logger.warning("metrics: cannot count the broker's queues (%s)", error)
            return
        ready, unacked = _gauge("warehouse_queue_length"), _gauge("warehouse_queue_unacked")
        for depth in depths:
            ready.add_metric([depth.queue], depth.ready)
            if depth.unacked is not None:
                unacked.add_metric([depth.queue], depth.unacked)
        yield ready
        yield unacked

"""``celery worker`` serves its node's metrics (warehouse/metrics/node.py) from its main process."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import celeryd_init, worker_process_shutdown

from warehouse.metrics import node

logger = logging.getLogger(__name__)


@celeryd_init.connect
def _node_starting(sender: Any = None, instance: Any = None, **_kwargs: Any) -> None:
    # celeryd_init comes in the main process before the pool forks, and only for `celery worker`
    # (not beat, flower or inspect, which build the same app).
    app = getattr(instance, "app", None)
    if app is None or not hasattr(app, "warehouse"):
        return
    try:
        node.serve_node_metrics(app.warehouse.settings)
    except OSError as error:
        # The port taken (two nodes on one machine with one setting?): the node's work matters more
        # than its figures, so it runs on, and says so.
        logger.error("worker %s: cannot serve metrics on %s (%s); running without them", sender, node.metrics_port(app.warehouse.settings), error)


@worker_process_shutdown.connect
def _process_ending(**_kwargs: Any) -> None:
    node.process_ended()

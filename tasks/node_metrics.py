"""``celery worker`` serves its node's metrics (warehouse/metrics/node.py) from its main process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery.signals import celeryd_init, worker_process_shutdown, worker_ready

from warehouse.metrics import node

logger = logging.getLogger(__name__)

# The directory chosen by this main process, by app: celeryd_init comes before the pool forks (the
# children must inherit it) but also before logging is set up, so the server starts at worker_ready,
# where its failure can be logged.
_prepared: dict[int, Path] = {}


def _warehouse_app(candidate: Any) -> Any:
    app = getattr(candidate, "app", None)
    return app if app is not None and hasattr(app, "warehouse") else None


@celeryd_init.connect
def _node_starting(sender: Any = None, instance: Any = None, **_kwargs: Any) -> None:
    # Only `celery worker` sends celeryd_init (not beat, flower or inspect, which build the same app).
    app = _warehouse_app(instance)
    if app is not None:
        directory = node.prepare_node(app.warehouse.settings)
        if directory is not None:
            _prepared[id(app)] = directory


@worker_ready.connect
def _node_ready(sender: Any = None, **_kwargs: Any) -> None:
    app = _warehouse_app(sender)
    directory = _prepared.pop(id(app), None) if app is not None else None
    if directory is None:
        return
    try:
        node.serve_node(app.warehouse.settings, directory)
    except OSError as error:
        # The port taken (two nodes on one machine with one setting?): the node's work matters more
        # than its figures, so it runs on, and says so.
        logger.error("worker %s: cannot serve metrics on port %s (%s); running without them",
                     sender.hostname, node.metrics_port(app.warehouse.settings), error)


@worker_process_shutdown.connect
def _process_ending(**_kwargs: Any) -> None:
    node.process_ended()

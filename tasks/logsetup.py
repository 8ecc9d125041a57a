"""``celery -A tasks worker`` (and beat) logging as the ini says, not as Celery would.

By default Celery configures logging itself: its own handler and format on the root logger, the
ini's ``[loggers]``, ``[handlers]`` and ``[formatters]`` ignored, so production.ini's JSON lines
would never be written by a worker. Any receiver of Celery's ``setup_logging`` signal makes it
leave logging alone; tasks/celery.py connects one that calls ``configure_from_ini`` (the embedded
worker inside the web process needs none: pserve has set the web's logging up from the same ini).
The pool's children are forked with the configuration already in place and keep it.

``--loglevel`` (WARNING unless given) no longer sets the root logger's level: the ini's levels are
the configuration. A more verbose ``--loglevel`` than the ini's still lowers the ``celery`` logger,
whose lines are the worker's own ("Task ... received", "... succeeded"): ``--loglevel=DEBUG`` still
shows what a worker is doing. It never raises it, so the default WARNING keeps the ini's INFO.
Applying it to the root logger, as Celery does, would also turn on SQLAlchemy's echo of every
statement at INFO (its engine logs SQL whenever INFO is enabled for it).
"""

from __future__ import annotations

import logging

from billiard.util import get_logger as pool_logger
from pyramid.paster import setup_logging


def configure_from_ini(ini_path: str, loglevel: int | None = None) -> None:
    """Configure logging from ``ini_path``'s logging sections (``logging.config.fileConfig``, with
    the loggers that already exist left enabled), then apply ``loglevel`` as said above."""
    setup_logging(ini_path)
    celery_logger = logging.getLogger("celery")
    if loglevel and loglevel < celery_logger.getEffectiveLevel():
        celery_logger.setLevel(loglevel)
    # billiard (the prefork pool) says a pool child died ("Process 'ForkPoolWorker-1' pid:12 exited
    # with 'signal 9 (SIGKILL)'") on a logger of its own that does not propagate, and that only
    # Celery's own set-up gives a handler: its lines go to the ini's handlers instead, at ERROR as
    # Celery has them (below that it tells every child's start and stop).
    billiard_logger = pool_logger()
    billiard_logger.propagate = True
    if billiard_logger.level == logging.NOTSET:
        billiard_logger.setLevel(logging.ERROR)

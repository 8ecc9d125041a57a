"""The app that ``celery -A tasks worker`` (and beat, flower, inspect) runs: built from WAREHOUSE_INI."""

import os
from typing import Any

from celery.signals import setup_logging

from warehouse.settings import load_settings

from .app import make_celery
from .logsetup import configure_from_ini

if not os.environ.get("WAREHOUSE_INI"):
    # SystemExit, not an exception: `celery -A tasks ...` then prints this one line, not a traceback.
    raise SystemExit("warehouse: set WAREHOUSE_INI to the ini file to build the Celery app from, e.g. WAREHOUSE_INI=production.ini celery -A tasks worker")

app = make_celery(load_settings(os.environ["WAREHOUSE_INI"]))


@setup_logging.connect
def _logging_from_ini(loglevel: int | None = None, **_kwargs: Any) -> None:
    # Here, not in make_celery: the web process builds its Celery app with make_celery too, and has
    # its logging from pserve already (tasks/logsetup.py).
    configure_from_ini(os.environ["WAREHOUSE_INI"], loglevel)

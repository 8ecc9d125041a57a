"""The app that ``celery -A tasks worker`` (and beat, flower, inspect) runs: built from WAREHOUSE_INI."""

import os

from warehouse.settings import load_settings

from .app import make_celery

if not os.environ.get("WAREHOUSE_INI"):
    raise RuntimeError("Set WAREHOUSE_INI to the ini file to build the Celery app from, e.g. production.ini")

app = make_celery(load_settings(os.environ["WAREHOUSE_INI"]))

"""The app that ``celery -A tasks worker`` (and beat, flower, inspect) runs: built from WAREHOUSE_INI."""

import os

from warehouse.settings import load_settings

from .app import make_celery

if not os.environ.get("WAREHOUSE_INI"):
    # SystemExit, not an exception: `celery -A tasks ...` then prints this one line, not a traceback.
    raise SystemExit("warehouse: set WAREHOUSE_INI to the ini file to build the Celery app from, e.g. WAREHOUSE_INI=production.ini celery -A tasks worker")

app = make_celery(load_settings(os.environ["WAREHOUSE_INI"]))
